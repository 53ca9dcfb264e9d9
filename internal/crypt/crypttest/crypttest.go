// Package crypttest makes keys for tests.
package crypttest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
)

// KEK returns a new random key-encryption key.
func KEK(t testing.TB) *crypt.LocalKEK {
	t.Helper()
	raw, err := crypt.NewDataKey()
	require.NoError(t, err)
	k, err := crypt.NewLocalKEK(raw)
	require.NoError(t, err)
	return k
}

// Ring returns a keyring with current as the wrapping key.
func Ring(t testing.TB, current crypt.KeyEncryptionKey, old ...crypt.KeyEncryptionKey) *crypt.Keyring {
	t.Helper()
	r, err := crypt.NewKeyring(current, old...)
	require.NoError(t, err)
	return r
}
