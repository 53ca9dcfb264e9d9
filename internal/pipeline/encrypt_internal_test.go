package pipeline

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
)

// seal encrypts in place when the buffer has room, and reallocates when not.
func TestUploaderSeal(t *testing.T) {
	c, err := crypt.NewChunkCipher(make([]byte, crypt.KeySize), "b1")
	require.NoError(t, err)
	u := &uploader{cipher: c}
	plain := []byte("compressed chunk bytes")

	roomy := make([]byte, len(plain), len(plain)+crypt.Overhead)
	copy(roomy, plain)
	sealed := u.seal(4, roomy)
	assert.Same(t, &roomy[0], &sealed[0], "encrypted in place")
	got, err := c.Open(nil, sealed, 4)
	require.NoError(t, err)
	assert.Equal(t, plain, got)

	tight := append([]byte(nil), plain...)[:len(plain):len(plain)]
	sealed = u.seal(5, tight)
	assert.Equal(t, plain, tight, "input untouched")
	got, err = c.Open(nil, sealed, 5)
	require.NoError(t, err)
	assert.Equal(t, plain, got)
	assert.Len(t, sealed, len(plain)+crypt.Overhead)
}
