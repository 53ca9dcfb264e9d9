package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMetricsBlock(t *testing.T) {
	c, err := Parse([]byte(good))
	require.NoError(t, err)
	assert.Empty(t, c.Metrics.Listen, "the worker's /metrics is off by default")
	assert.Empty(t, c.Metrics.AgentListen, "the agent's /metrics is off by default")
	assert.Equal(t, DefaultMetricsRefresh, c.Metrics.RefreshInterval.Std())

	c, err = Parse([]byte(good + `
metrics:
  listen: 127.0.0.1:9464
  agent_listen: ":9465"
  refresh_interval: 15s
`))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9464", c.Metrics.Listen)
	assert.Equal(t, ":9465", c.Metrics.AgentListen)
	assert.Equal(t, 15*time.Second, c.Metrics.RefreshInterval.Std())

	for yaml, key := range map[string]string{
		"metrics:\n  listen: 9464\n":                   "metrics.listen",
		"metrics:\n  agent_listen: localhost\n":        "metrics.agent_listen",
		"metrics:\n  refresh_interval: 100ms\n":        "metrics.refresh_interval",
		"metrics:\n  listen: 127.0.0.1:9464\n  x: 1\n": "x",
	} {
		_, err := Parse([]byte(good + yaml))
		require.Error(t, err, yaml)
		assert.Contains(t, err.Error(), key, yaml)
	}
}

func TestMetricsReload(t *testing.T) {
	old, err := Parse([]byte(good))
	require.NoError(t, err)
	cur, err := Parse([]byte(good + "metrics:\n  listen: 127.0.0.1:9464\n  refresh_interval: 5s\n"))
	require.NoError(t, err)
	assert.Contains(t, Changes(old, cur), "metrics.refresh_interval: 5m0s -> 5s", "the refresh loop reads the interval live")
	assert.Contains(t, RestartChanges(old, cur), "metrics", "a new listen address needs a restart")
}
