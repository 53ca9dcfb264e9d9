// Package crypt encrypts backups at rest with envelope encryption.
//
// Every backup has its own random 32-byte data key (NewDataKey). Chunks are
// encrypted with it by a ChunkCipher: AES-256-GCM, one random nonce per
// chunk, with the chunk index and the backup ID as additional authenticated
// data, so that a chunk cannot be decrypted at another position or in
// another backup. The data key itself is stored only wrapped (encrypted) by
// a key encryption key (KeyEncryptionKey), together with that key's ID.
// Rotating the key encryption key therefore never rewrites backup data: new
// backups are wrapped by the new key, and a Keyring keeps the old keys to
// unwrap older backups. LocalKEK is a key held by the agent (a key file or
// an environment variable); a KMS can be plugged in behind the same
// interface.
//
// An encrypted chunk is stored as
//
//	header (4 bytes: "SCE" and format version 1) || nonce (12 bytes) ||
//	ciphertext || GCM tag (16 bytes)
//
// so Overhead (32) bytes longer than its plaintext. The additional
// authenticated data is the header, the chunk index as a big-endian uint64
// and the backup ID. A wrapped data key is nonce (12) || ciphertext || tag
// (16), see LocalKEK.Wrap.
//
// Random 96-bit nonces are safe for far more chunks than a backup has (the
// usual bound is 2^32 messages per key, and every backup has its own key).
package crypt

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Sizes of the encrypted chunk format.
const (
	// HeaderSize is the size of what precedes the ciphertext: the 4-byte
	// header and the 12-byte nonce.
	HeaderSize = 16
	// Overhead is how many bytes longer an encrypted chunk is than its
	// plaintext: HeaderSize and the 16-byte GCM tag.
	Overhead = 32

	nonceSize = 12
	tagSize   = 16
)

// The sizes must add up.
var _ = [1]struct{}{}[HeaderSize-(len(magic)+1+nonceSize)+Overhead-(HeaderSize+tagSize)]

// formatVersion is the version of the encrypted chunk format.
const formatVersion = 1

// magic starts every encrypted chunk.
const magic = "SCE"

// NewDataKey returns a new random 32-byte data key.
func NewDataKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate data key: %w", err)
	}
	return key, nil
}

// ChunkCipher encrypts and decrypts the chunks of one backup with its data
// key. It is safe for concurrent use.
type ChunkCipher struct {
	aead     cipher.AEAD
	backupID string
	nonceKey []byte // derived from the data key, for SealDeterministic
}

// NewChunkCipher returns the cipher of the backup backupID for its 32-byte
// data key. The backup ID is authenticated with every chunk: decrypting a
// chunk with another backup ID fails.
func NewChunkCipher(dataKey []byte, backupID string) (*ChunkCipher, error) {
	if len(dataKey) != KeySize {
		return nil, &cryptError{kind: ErrInvalidKey, msg: fmt.Sprintf("data key must be %d bytes, got %d", KeySize, len(dataKey))}
	}
	if backupID == "" {
		return nil, &cryptError{kind: ErrInvalidKey, msg: "chunk cipher needs the backup ID"}
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	nk, err := derive(dataKey, labelNonce)
	if err != nil {
		return nil, err
	}
	return &ChunkCipher{aead: aead, backupID: backupID, nonceKey: nk}, nil
}

// BackupID returns the backup ID the cipher is bound to.
func (c *ChunkCipher) BackupID() string { return c.backupID }

// String describes the cipher (never the key).
func (c *ChunkCipher) String() string { return "crypt.ChunkCipher(" + c.backupID + ")" }

// GoString describes the cipher (never the key).
func (c *ChunkCipher) GoString() string { return c.String() }

// aad returns the additional authenticated data of a chunk.
func (c *ChunkCipher) aad(chunkIndex uint64) []byte {
	b := make([]byte, 0, 4+8+len(c.backupID))
	b = append(b, magic...)
	b = append(b, formatVersion)
	b = binary.BigEndian.AppendUint64(b, chunkIndex)
	return append(b, c.backupID...)
}

// Seal encrypts the chunk plaintext at position chunkIndex, appends the
// result (len(plaintext)+Overhead bytes) to dst and returns the updated
// slice.
//
// To encrypt in place, put the plaintext at buf[HeaderSize:] of a buffer
// with capacity for Overhead more bytes and pass buf[:0] as dst; any other
// overlap of dst's spare capacity and plaintext is invalid.
func (c *ChunkCipher) Seal(dst, plaintext []byte, chunkIndex uint64) []byte {
	var nonce [nonceSize]byte
	// crypto/rand.Read never fails (since Go 1.24).
	_, _ = rand.Read(nonce[:])
	return c.seal(dst, plaintext, chunkIndex, nonce)
}

// SealDeterministic is Seal with a synthetic nonce: an HMAC-SHA256, keyed
// by a key derived from the data key, of the chunk's additional data and
// plaintext. Sealing the same plaintext at the same index with the same
// data key and backup ID therefore gives the same bytes, which lets a
// retried upload recognize a chunk it already stored; different plaintexts
// get different nonces (up to a 96-bit collision), so nonces are never
// reused with different data. The output is opened by Open like any other
// chunk; it reveals only whether two chunks at the same position of the
// same backup are equal. The same in-place rules as Seal apply.
func (c *ChunkCipher) SealDeterministic(dst, plaintext []byte, chunkIndex uint64) []byte {
	m := hmac.New(sha256.New, c.nonceKey)
	m.Write(c.aad(chunkIndex))
	m.Write(plaintext)
	var nonce [nonceSize]byte
	copy(nonce[:], m.Sum(nil))
	return c.seal(dst, plaintext, chunkIndex, nonce)
}

func (c *ChunkCipher) seal(dst, plaintext []byte, chunkIndex uint64, nonce [nonceSize]byte) []byte {
	ret, out := sliceForAppend(dst, len(plaintext)+Overhead)
	copy(out, magic)
	out[len(magic)] = formatVersion
	copy(out[len(magic)+1:HeaderSize], nonce[:])
	c.aead.Seal(out[HeaderSize:HeaderSize], out[len(magic)+1:HeaderSize], plaintext, c.aad(chunkIndex))
	return ret
}

// Open decrypts and authenticates the chunk ciphertext (produced by Seal)
// at position chunkIndex, appends the plaintext to dst and returns the
// updated slice.
//
// If the data key, the backup ID or the chunk index differ from those used
// by Seal, or the ciphertext was modified, the error matches ErrDecrypt.
// Data without the encryption header fails with an error matching
// ErrNotEncrypted.
//
// To decrypt in place, pass ciphertext[HeaderSize:HeaderSize] as dst; any
// other overlap of dst's spare capacity and ciphertext is invalid.
func (c *ChunkCipher) Open(dst, ciphertext []byte, chunkIndex uint64) ([]byte, error) {
	if !IsEncrypted(ciphertext) {
		return nil, &cryptError{kind: ErrNotEncrypted,
			msg: "data has no Strata encryption header: it was stored without encryption"}
	}
	if v := ciphertext[len(magic)]; v != formatVersion {
		return nil, &cryptError{kind: ErrDecrypt,
			msg: fmt.Sprintf("data is encrypted in format version %d, which this version of Strata cannot read: upgrade it", v)}
	}
	if len(ciphertext) < Overhead {
		return nil, &cryptError{kind: ErrDecrypt,
			msg: fmt.Sprintf("encrypted data is truncated (%d bytes, at least %d expected)", len(ciphertext), Overhead)}
	}
	out, err := c.aead.Open(dst, ciphertext[len(magic)+1:HeaderSize], ciphertext[HeaderSize:], c.aad(chunkIndex))
	if err != nil {
		return nil, &cryptError{kind: ErrDecrypt,
			msg: fmt.Sprintf("authentication failed for chunk %d of backup %s: wrong data key, or the data was modified, moved from another position or taken from another backup", chunkIndex, c.backupID)}
	}
	return out, nil
}

// IsEncrypted reports whether data starts with the header of an encrypted
// chunk (whatever its format version). It is a hint for error messages:
// unencrypted data may start with the same bytes by chance.
func IsEncrypted(data []byte) bool {
	return len(data) > len(magic) && bytes.HasPrefix(data, []byte(magic))
}

// sliceForAppend extends in by n bytes, reallocating if needed; head is the
// whole result and tail the n new bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return head, tail
}
