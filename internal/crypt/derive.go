package crypt

import (
	"crypto/hkdf"
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
