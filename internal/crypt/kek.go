package crypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
)

// KeySize is the size in bytes of key encryption keys and data keys
// (AES-256).
const KeySize = 32

// KeyEncryptionKey (KEK) wraps and unwraps per-backup data keys. The wrapped
// form and the KEK's ID are stored with the backup; restoring needs a KEK of
// that ID. LocalKEK is the built-in implementation; a KMS (AWS KMS, Cloud
// KMS, Vault transit, ...) can be plugged in by implementing this interface.
// Implementations must be safe for concurrent use.
type KeyEncryptionKey interface {
	// ID identifies the key; it is recorded in the backup manifest and must
	// be stable and not secret (e.g. "local:0123456789abcdef" or a KMS key
	// name).
	ID() string
	// Wrap encrypts a data key.
	Wrap(dataKey []byte) ([]byte, error)
	// Unwrap decrypts a data key produced by Wrap. A wrapped key that this
	// KEK did not produce, or that was modified, fails with an error
	// matching ErrWrongKey.
	Unwrap(wrapped []byte) ([]byte, error)
}

// wrapAAD is the additional authenticated data of wrapped data keys, so that
// a wrapped key cannot be confused with other data sealed by the same KEK.
var wrapAAD = []byte("strata data key v1")

// LocalKEK is a KeyEncryptionKey held by the agent itself (a key file or an
// environment variable). It wraps data keys with AES-256-GCM: the wrapped
// form is a random 12-byte nonce, the encrypted key and the 16-byte tag.
type LocalKEK struct {
	id   string
	aead cipher.AEAD
}

// NewLocalKEK returns a LocalKEK for 32 raw key bytes. Its ID is "local:"
// followed by the first 16 hex characters of the key's sha256, so that the
// same key always has the same ID and the ID does not reveal the key.
func NewLocalKEK(key []byte) (*LocalKEK, error) {
	if len(key) != KeySize {
		return nil, &cryptError{kind: ErrInvalidKey, msg: fmt.Sprintf("key encryption key must be %d bytes, got %d", KeySize, len(key))}
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key)
	return &LocalKEK{id: "local:" + hex.EncodeToString(sum[:8]), aead: aead}, nil
}

// KEKFromFile reads a LocalKEK from a file holding the 32-byte key raw, as
// 64 hex characters, or in base64 (standard or URL alphabet, padded or not).
// Surrounding whitespace around the hex and base64 forms is ignored.
func KEKFromFile(path string) (*LocalKEK, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s cannot be read: %w", path, err)
	}
	key, ok := parseKey(data)
	if !ok {
		return nil, &cryptError{kind: ErrInvalidKey,
			msg: fmt.Sprintf("key file %s must hold %d bytes (raw, hex or base64), found %d bytes in no recognized format; generate one with: openssl rand -hex %d > %s",
				path, KeySize, len(data), KeySize, path)}
	}
	return NewLocalKEK(key)
}

// KEKFromEnv reads a LocalKEK from the environment variable name, in the
// formats accepted by KEKFromFile (hex or base64 in practice).
func KEKFromEnv(name string) (*LocalKEK, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return nil, &cryptError{kind: ErrInvalidKey,
			msg: fmt.Sprintf("environment variable %s is not set on this agent: set it to a %d-byte key in hex or base64 (e.g. from: openssl rand -hex %d)", name, KeySize, KeySize)}
	}
	key, ok := parseKey([]byte(v))
	if !ok {
		return nil, &cryptError{kind: ErrInvalidKey,
			msg: fmt.Sprintf("environment variable %s must hold %d bytes (raw, hex or base64), found %d characters in no recognized format", name, KeySize, len(v))}
	}
	return NewLocalKEK(key)
}

// parseKey decodes a 32-byte key given raw, in hex or in base64.
func parseKey(data []byte) ([]byte, bool) {
	if len(data) == KeySize {
		return bytes.Clone(data), true
	}
	s := string(bytes.TrimSpace(data))
	if len(s) == 2*KeySize {
		if key, err := hex.DecodeString(s); err == nil {
			return key, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil && len(key) == KeySize {
			return key, true
		}
	}
	return nil, false
}

// ID returns "local:" and the first 16 hex characters of the key's sha256.
func (k *LocalKEK) ID() string { return k.id }

// String returns the ID (never the key).
func (k *LocalKEK) String() string { return k.id }

// GoString returns the ID (never the key).
func (k *LocalKEK) GoString() string { return "crypt.LocalKEK(" + k.id + ")" }

// Wrap encrypts dataKey: random 12-byte nonce || ciphertext || 16-byte tag.
func (k *LocalKEK) Wrap(dataKey []byte) ([]byte, error) {
	if len(dataKey) == 0 {
		return nil, &cryptError{kind: ErrInvalidKey, msg: "cannot wrap an empty data key"}
	}
	ns := k.aead.NonceSize()
	out := make([]byte, ns, ns+len(dataKey)+k.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("wrap data key: random nonce: %w", err)
	}
	return k.aead.Seal(out, out[:ns], dataKey, wrapAAD), nil
}

// Unwrap decrypts a data key wrapped by Wrap with the same key. Any other
// input fails with an error matching ErrWrongKey.
func (k *LocalKEK) Unwrap(wrapped []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(wrapped) < ns+k.aead.Overhead()+1 {
		return nil, &cryptError{kind: ErrWrongKey,
			msg: fmt.Sprintf("wrapped data key is %d bytes, too short to be wrapped by key %q: it is corrupt", len(wrapped), k.id)}
	}
	key, err := k.aead.Open(nil, wrapped[:ns], wrapped[ns:], wrapAAD)
	if err != nil {
		return nil, &cryptError{kind: ErrWrongKey,
			msg: fmt.Sprintf("key %q cannot unwrap the backup's data key: it was wrapped by another key, or the wrapped key is corrupt", k.id)}
	}
	return key, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, &cryptError{kind: ErrInvalidKey, msg: "create AES cipher", err: err}
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create AES-GCM: %w", err)
	}
	return aead, nil
}
