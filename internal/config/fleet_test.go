package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFleetLimitsAreValidated(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, err string }{
		"negative backups":  {"fleet: {max_concurrent_backups: -1}\n", "fleet.max_concurrent_backups: -1 is out of range"},
		"negative restores": {"fleet: {max_concurrent_restores: -2}\n", "fleet.max_concurrent_restores: -2 is out of range"},
		"absurd backups":    {"fleet: {max_concurrent_backups: 1000000}\n", "fleet.max_concurrent_backups: 1000000 is out of range"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(base + tc.yaml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
	_, err := Parse([]byte("storage: {local: {root: r}, max_concurrent: -1}\n" + base[len("storage: {local: {root: r}}\n"):]))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "storage.max_concurrent: -1 is out of range")

	c, err := Parse([]byte("storage: {local: {root: r}, max_concurrent: 3}\n" + base[len("storage: {local: {root: r}}\n"):] +
		"fleet: {max_concurrent_backups: 2, max_concurrent_restores: 0}\n"))
	require.NoError(t, err)
	assert.Equal(t, 2, c.Fleet.MaxConcurrentBackups)
	assert.Equal(t, 0, c.Fleet.MaxConcurrentRestores)
	assert.Equal(t, 3, c.Storage.MaxConcurrent)
	assert.Equal(t, "local:r", c.Storage.Target())
}
