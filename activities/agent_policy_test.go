package activities

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/config"
)

// An activity reads its instance from the live policy when it starts: a
// reloaded file changes the compression and throttle of the next backup.
func TestAgentReadsTheLivePolicy(t *testing.T) {
	const y = `
storage: {type: local, local: {root: ./repo}}
defaults: {compression: zstd, throttle: 1MiB}
instances:
  - id: db1
    host: h1
    connect: {address: 127.0.0.1:3306, user: root}
    datadir: /var/lib/mysql
`
	path := filepath.Join(t.TempDir(), "strata.yaml")
	require.NoError(t, os.WriteFile(path, []byte(y), 0o600))
	cfg, err := config.Load(path)
	require.NoError(t, err)
	w := config.NewWatcher(cfg, 0, nil)
	a := &Agent{Host: "h1", Config: cfg, Policy: w}
	c := &Catalog{Config: cfg, Policy: w}

	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(y, "{compression: zstd, throttle: 1MiB}", "{compression: gzip, throttle: 8MiB, max_chain_length: 3}", 1)), 0o600))
	changed, err := w.Check()
	require.NoError(t, err)
	require.True(t, changed)
	in, err := a.instance("db1")
	require.NoError(t, err)
	assert.Equal(t, "gzip", in.Backup.Compression)
	assert.Equal(t, config.ByteSize(8<<20), in.Backup.Throttle)
	cin, err := c.cfg().Instance("db1")
	require.NoError(t, err)
	assert.Equal(t, 3, cin.Backup.MaxChainLength, "the worker's plan reads the live chain length")
	assert.Equal(t, "zstd", a.Config.Instances[0].Backup.Compression, "Config stays the config the process started with")
}
