package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPreflightDefaultsAndOverrides(t *testing.T) {
	c, err := Parse([]byte(good))
	require.NoError(t, err)
	db1, _ := c.Instance("db1")
	p := db1.Backup.Preflight
	assert.True(t, p.On())
	assert.Equal(t, 5*time.Minute, p.MaxTrxAge.Std())
	assert.Equal(t, 64, p.MaxThreadsRunning)
	assert.Equal(t, 5*time.Minute, p.MaxReplicationLag.Std())
	assert.Equal(t, ByteSize(1<<30), p.MinFreeDisk)
	assert.Equal(t, 10*time.Minute, p.Budget.Std())
	assert.Equal(t, 15*time.Second, p.Recheck.Std())

	c, err = Parse([]byte(`
storage: {local: {root: r}}
defaults:
  preflight: {max_trx_age: 30s, budget: 1m, min_free_disk: 10GiB}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {preflight: {max_trx_age: 2s, recheck: 1s}}}
  - {id: b, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {preflight: {enabled: false}}}
  - {id: c, host: h, connect: {address: x:1, user: u}, datadir: /d}
`))
	require.NoError(t, err)
	a, _ := c.Instance("a")
	assert.Equal(t, 2*time.Second, a.Backup.Preflight.MaxTrxAge.Std(), "the instance's own value")
	assert.Equal(t, time.Second, a.Backup.Preflight.Recheck.Std())
	assert.Equal(t, time.Minute, a.Backup.Preflight.Budget.Std(), "inherited from defaults.preflight")
	assert.Equal(t, ByteSize(10<<30), a.Backup.Preflight.MinFreeDisk)
	assert.Equal(t, 64, a.Backup.Preflight.MaxThreadsRunning, "the built-in default")
	assert.True(t, a.Backup.Preflight.On())
	b, _ := c.Instance("b")
	assert.False(t, b.Backup.Preflight.On(), "enabled: false turns it off")
	cc, _ := c.Instance("c")
	assert.Equal(t, 30*time.Second, cc.Backup.Preflight.MaxTrxAge.Std())

	c, err = Parse([]byte(`
storage: {local: {root: r}}
defaults: {preflight: {enabled: false}}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {preflight: {enabled: true}}}
  - {id: b, host: h, connect: {address: x:1, user: u}, datadir: /d}
`))
	require.NoError(t, err)
	a, _ = c.Instance("a")
	b, _ = c.Instance("b")
	assert.True(t, a.Backup.Preflight.On())
	assert.False(t, b.Backup.Preflight.On(), "off for the fleet in defaults")
}

func TestPreflightValidationNamesTheKey(t *testing.T) {
	cases := map[string]struct{ pf, want string }{
		"trx age":     {"{max_trx_age: 10ms}", "instances[0] (a).backup.preflight.max_trx_age: 10ms is too short"},
		"lag":         {"{max_replication_lag: 500ms}", "instances[0] (a).backup.preflight.max_replication_lag"},
		"threads":     {"{max_threads_running: -3}", "instances[0] (a).backup.preflight.max_threads_running: -3 must be at least 1"},
		"budget":      {"{budget: 48h}", "instances[0] (a).backup.preflight.budget: 48h0m0s is out of range"},
		"recheck":     {"{recheck: 100ms}", "instances[0] (a).backup.preflight.recheck: 100ms is out of range"},
		"unknown key": {"{max_trx: 1m}", "field max_trx not found"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {preflight: ` + tc.pf + `}}]`))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := Parse([]byte(`storage: {local: {root: r}}
defaults: {preflight: {recheck: 2h}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}]`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "defaults.preflight.recheck")
}
