package crypt

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
)

// Labels of the keys derived from a data key. The data key itself is the
// AES-256-GCM key of the chunks; every other use gets its own derived key.
const (
	labelNonce = "strata chunk nonce v1"
	labelName  = "strata chunk name v1"
)

// derive returns a KeySize-byte key derived from key for one purpose
// (HKDF-SHA256 with the label as info).
func derive(key []byte, label string) ([]byte, error) {
	out, err := hkdf.Key(sha256.New, key, nil, label, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive %q key: %w", label, err)
	}
	return out, nil
}

// ChunkNameKey returns the key that names the chunks of an encrypted backup
// (see pipeline.ContentChunkKey), derived from its data key, so that chunk
// names reveal nothing about their content to someone without the data key.
func ChunkNameKey(dataKey []byte) ([]byte, error) {
	if len(dataKey) != KeySize {
		return nil, &cryptError{kind: ErrInvalidKey, msg: fmt.Sprintf("data key must be %d bytes, got %d", KeySize, len(dataKey))}
	}
	return derive(dataKey, labelName)
}

// MACSize is the length of a MAC made by MAC: an HMAC-SHA256.
const MACSize = sha256.Size

// AuthKey returns the key that authenticates metadata of one kind (purpose,
// e.g. "binlog index/<instance>") written by the holder of dataKey: an
// HKDF-SHA256 derivation of the data key with "strata auth v1 " and the
// purpose as info. Since the data key is stored only wrapped by a key
// encryption key, only a holder of that key can make a valid MAC; distinct
// purposes give unrelated keys.
func AuthKey(dataKey []byte, purpose string) []byte {
	out, err := hkdf.Key(sha256.New, dataKey, nil, "strata auth v1 "+purpose, KeySize)
	if err != nil {
		// Only for an output length HKDF-SHA256 cannot produce; KeySize is fine.
		panic(fmt.Sprintf("crypt: derive auth key: %v", err))
	}
	return out
}

// MAC returns HMAC-SHA256(authKey, msg).
func MAC(authKey, msg []byte) []byte {
	m := hmac.New(sha256.New, authKey)
	m.Write(msg)
	return m.Sum(nil)
}

// CheckMAC reports whether mac is HMAC-SHA256(authKey, msg), in constant
// time.
func CheckMAC(authKey, msg, mac []byte) bool {
	return len(mac) == MACSize && hmac.Equal(MAC(authKey, msg), mac)
}
