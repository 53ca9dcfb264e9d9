package activities

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/config"
)

func TestLimitsFollowTheConfigInAcquisitionOrder(t *testing.T) {
	cfg := &config.Config{Storage: config.Storage{Type: "local", Local: config.LocalStorage{Root: "/repo"}}}
	require.Empty(t, Limits(cfg), "0 is no limit")
	cfg.Fleet = config.Fleet{MaxConcurrentBackups: 2, MaxConcurrentRestores: 1}
	cfg.Storage.MaxConcurrent = 3
	require.Equal(t, []Limit{
		{Scope: "fleet", Name: "backup", Kinds: []string{"backup"}, Max: 2},
		{Scope: "fleet", Name: "restore", Kinds: []string{"restore"}, Max: 1},
		{Scope: "storage", Name: "local:/repo", Kinds: []string{"backup", "restore"}, Max: 3},
	}, Limits(cfg))
	require.True(t, Limits(cfg)[2].Applies("restore"))
	require.False(t, Limits(cfg)[0].Applies("restore"))
}
