package crypt_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
)

func TestAuthKeyAndMAC(t *testing.T) {
	dk := key(t)
	k := crypt.AuthKey(dk, "manifest")
	require.Len(t, k, crypt.KeySize)
	assert.Equal(t, k, crypt.AuthKey(dk, "manifest"), "deterministic")
	assert.NotEqual(t, k, crypt.AuthKey(dk, "binlog index"), "one key per purpose")
	assert.NotEqual(t, k, crypt.AuthKey(key(t), "manifest"), "one key per data key")
	assert.False(t, bytes.Equal(k, dk), "never the data key itself")

	data := []byte(`{"backup_id":"b1"}`)
	mac := crypt.MAC(k, data)
	assert.True(t, crypt.CheckMAC(k, data, mac))
	assert.False(t, crypt.CheckMAC(k, []byte(`{"backup_id":"b2"}`), mac), "altered data")
	assert.False(t, crypt.CheckMAC(crypt.AuthKey(key(t), "manifest"), data, mac), "other key")
	assert.False(t, crypt.CheckMAC(k, data, nil), "no MAC")
	assert.False(t, crypt.CheckMAC(k, data, mac[:16]), "truncated MAC")
}
