package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLogCopyIntervalDefaultsInheritsAndIsBounded(t *testing.T) {
	c, err := Parse([]byte(`
storage: {local: {root: r}}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}
  - {id: b, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {log_copy_interval: 1s}}
`))
	require.NoError(t, err)
	assert.Equal(t, 100*time.Millisecond, c.Instances[0].Backup.LogCopyInterval.Std(), "default: 100ms, not the tool's 1s")
	assert.Equal(t, time.Second, c.Instances[1].Backup.LogCopyInterval.Std())

	c, err = Parse([]byte(`
storage: {local: {root: r}}
defaults: {log_copy_interval: 20ms}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}
`))
	require.NoError(t, err)
	assert.Equal(t, 20*time.Millisecond, c.Instances[0].Backup.LogCopyInterval.Std(), "inherited from defaults")

	for _, v := range []string{"500us", "11s", "1500us", "-1s"} {
		_, err := Parse([]byte(`
storage: {local: {root: r}}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {log_copy_interval: ` + v + `}}
`))
		require.Error(t, err, v)
		assert.Contains(t, err.Error(), "instances[0] (a).backup.log_copy_interval", v)
	}
}
