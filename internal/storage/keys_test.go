package storage_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/strata-backup/strata/internal/storage"
)

func TestValidateKey(t *testing.T) {
	for _, k := range []string{"a", "a/b", "inst/backups/20240101T000000Z/chunks/00000000.zst", ".hidden", "a/..x", "a b/c"} {
		assert.NoError(t, storage.ValidateKey(k), k)
	}
	for _, k := range []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../a", "a/..", "a\\b", "a\x00b"} {
		assert.ErrorIs(t, storage.ValidateKey(k), storage.ErrInvalidKey, "%q", k)
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"", "a", "a/", "inst/back", "a/.", "a/..", "a/b/"} {
		assert.NoError(t, storage.ValidatePrefix(p), p)
	}
	for _, p := range []string{"/", "/a", "a//", "a//b", "../", "a/../b", "./a", "a\\"} {
		assert.ErrorIs(t, storage.ValidatePrefix(p), storage.ErrInvalidKey, "%q", p)
	}
	assert.ErrorContains(t, storage.ValidatePrefix("/abs"), "absolute")
}
