package manifest_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
)

func TestEncryptedManifestRoundTrip(t *testing.T) {
	m := sample()
	m.Encrypted, m.EncryptionKeyID = true, "local:0123456789abcdef"
	m.UploadedBytes, m.ReusedBytes = 12, 8
	m.Chunks[0].Key = "chunks/0123456789abcdef0123456789abcdef.zst.enc"
	data, err := manifest.Encode(m)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"encrypted": true`)
	assert.Contains(t, string(data), `"uploaded_bytes": 12`)
	assert.Contains(t, string(data), `"reused_bytes": 8`)
	got, err := manifest.Decode(data)
	require.NoError(t, err)
	assert.Equal(t, m, got)
}

// Manifests written before encryption and resume existed still decode, as
// unencrypted backups with nothing reused.
func TestOldManifestDecodesAsUnencrypted(t *testing.T) {
	data, err := manifest.Encode(sample())
	require.NoError(t, err)
	assert.NotContains(t, string(data), "encrypted")
	assert.NotContains(t, string(data), "uploaded_bytes")
	got, err := manifest.Decode(data)
	require.NoError(t, err)
	assert.False(t, got.Encrypted)
	assert.Empty(t, got.EncryptionKeyID)
	assert.Zero(t, got.UploadedBytes+got.ReusedBytes)
}

func TestEncryptedNeedsKeyID(t *testing.T) {
	m := sample()
	m.Encrypted = true
	_, err := manifest.Encode(m)
	require.ErrorIs(t, err, manifest.ErrInvalid)
	assert.True(t, strings.Contains(err.Error(), "encryption_key_id is required for an encrypted backup"), err.Error())
}
