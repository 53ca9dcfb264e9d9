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

// AuthKey returns the key that authenticates metadata of one kind (purpose,
// e.g. "manifest") belonging to the data that dataKey encrypts: HKDF-SHA256
// of the data key with a purpose-specific label. Only a holder of a key
// encryption key that unwraps the data key can derive it; rotating the key
// encryption key re-wraps the data key and leaves this key unchanged.
func AuthKey(dataKey []byte, purpose string) []byte {
	// hkdf.Key fails only for an output longer than 255 hashes.
	out, err := hkdf.Key(sha256.New, dataKey, nil, "strata auth v1 "+purpose, KeySize)
	if err != nil {
		panic(err)
	}
	return out
}

// MAC returns the HMAC-SHA256 of data under key.
func MAC(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

// CheckMAC reports, in constant time, whether mac is the MAC of data under key.
func CheckMAC(key, data, mac []byte) bool {
	return hmac.Equal(MAC(key, data), mac)
}
