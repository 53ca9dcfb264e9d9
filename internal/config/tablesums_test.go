package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTableSumsAndHeartbeatConfig(t *testing.T) {
	c, err := Parse([]byte(`
storage: {local: {root: r}}
defaults: {table_sums_max_size: 10GiB}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}
  - {id: b, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {table_sums: false, table_sums_max_size: 1GiB},
     heartbeat: {table: strata.heartbeat}}
  - {id: c, host: h, connect: {address: x:1, user: u}, datadir: /d, heartbeat: {table: ops.hb, every: 250ms}}
`))
	require.NoError(t, err)
	a, b, cc := &c.Instances[0], &c.Instances[1], &c.Instances[2]
	assert.False(t, a.Backup.SumsOn(), "off by default: a second full read of the data on the source")
	assert.Equal(t, ByteSize(10<<30), a.Backup.TableSumsMaxSize, "inherited from defaults")
	assert.False(t, b.Backup.SumsOn())
	assert.Equal(t, ByteSize(1<<30), b.Backup.TableSumsMaxSize)
	assert.Equal(t, Heartbeat{}, a.Heartbeat, "off unless set")
	assert.Equal(t, Heartbeat{Table: "strata.heartbeat", Every: Duration(time.Second)}, b.Heartbeat)
	assert.Equal(t, 250*time.Millisecond, cc.Heartbeat.Every.Std())

	// defaults.table_sums: false turns it off for every instance that
	// leaves it unset; the size cap defaults to 50GiB.
	c, err = Parse([]byte(`
storage: {local: {root: r}}
defaults: {table_sums: false}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}
  - {id: b, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {table_sums: true}}
`))
	require.NoError(t, err)
	assert.False(t, c.Instances[0].Backup.SumsOn())
	assert.True(t, c.Instances[1].Backup.SumsOn())
	assert.Equal(t, ByteSize(50<<30), c.Instances[0].Backup.TableSumsMaxSize)

	for yaml, want := range map[string]string{
		`heartbeat: {table: heartbeat}`:       "instances[0] (a).heartbeat.table",
		"heartbeat: {table: \"a`b.c\"}":       "instances[0] (a).heartbeat.table",
		`heartbeat: {table: a.b.c}`:           "instances[0] (a).heartbeat.table",
		`heartbeat: {table: a.b, every: 1ms}`: "instances[0] (a).heartbeat.every",
	} {
		_, err := Parse([]byte("storage: {local: {root: r}}\ninstances:\n  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, " + yaml + "}\n"))
		if assert.Error(t, err, yaml) {
			assert.Contains(t, err.Error(), want, yaml)
		}
	}
}
