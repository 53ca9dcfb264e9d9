package activities

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
)

// An unencrypted backup of an instance that the restoring agent's config
// does not list is refused when the agent has key encryption keys: a
// restore on another host must not accept what a writer of the bucket
// planted. Without keys, or with allow_unencrypted, it is restored.
func TestRestoreOfUnlistedInstanceRefusesUnencrypted(t *testing.T) {
	cat := testCatalog(t, 0)
	kek, err := crypt.NewLocalKEK(make([]byte, crypt.KeySize))
	require.NoError(t, err)
	ring, err := crypt.NewKeyring(kek)
	require.NoError(t, err)
	m := bk("b1", manifest.TypeFull, "", 0, 100, 1)
	m.Instance = "gone"
	chain := []*manifest.Manifest{m}

	a := &Agent{Host: "h2", Config: cat.Config, Repo: cat.Repo, Keys: ring}
	_, err = a.chainCiphers(context.Background(), chain, false, zap.NewNop())
	require.Error(t, err)
	assert.Equal(t, ErrUnencrypted, appErrType(err))
	assert.Contains(t, err.Error(), "not in agent h2's config")

	_, err = a.chainCiphers(context.Background(), chain, true, zap.NewNop())
	require.NoError(t, err, "allowed explicitly")

	a.Keys = nil
	_, err = a.chainCiphers(context.Background(), chain, false, zap.NewNop())
	require.NoError(t, err, "an agent without keys restores unencrypted backups")
}
