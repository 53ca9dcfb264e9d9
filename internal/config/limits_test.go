package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// base is a valid config; each case appends to it or replaces its lines.
const base = `storage: {local: {root: r}}
instances:
  - id: a
    host: h
    connect: {address: "x:1", user: u}
    datadir: /d
`

func TestValuesThatCannotWorkAreRefused(t *testing.T) {
	cases := []struct {
		name, yaml, key string
	}{
		{"second document", base + "---\nencryption: {key_file: /k}\n", "line 8: a second YAML document (with keys encryption) follows `---`"},
		{"second document, scalar", base + "---\nhello\n", "a second YAML document follows `---`"},
		{"negative agent start timeout", base + "temporal: {agent_start_timeout: -5m}\n", "temporal.agent_start_timeout: -5m0s is out of range"},
		{"tiny agent start timeout", base + "temporal: {agent_start_timeout: 1ms}\n", "temporal.agent_start_timeout: 1ms is out of range"},
		{"negative heartbeat timeout", base + "temporal: {heartbeat_timeout: -30s}\n", "temporal.heartbeat_timeout: must be at least 5s"},
		{"absurd heartbeat timeout", base + "temporal: {heartbeat_timeout: 1000h}\n", "temporal.heartbeat_timeout: 1000h0m0s is too long"},
		{"negative backup timeout", base + "defaults: {timeout: -1h}\n", "defaults.timeout: -1h0m0s is out of range"},
		{"tiny instance backup timeout", base + "    backup: {timeout: 1s}\n", "instances[0] (a).backup.timeout: 1s is out of range"},
		{"huge backup timeout", base + "defaults: {timeout: 100000h}\n", "defaults.timeout: 100000h0m0s is out of range"},
		{"max_concurrent 100000", base + "agent: {max_concurrent: 100000}\n", "agent.max_concurrent: 100000 is out of range"},
		{"max_concurrent negative", base + "agent: {max_concurrent: -1}\n", "agent.max_concurrent: -1 is out of range"},
		{"NaN prepare_memory", base + "defaults: {prepare_memory: NaNGiB}\n", `"NaNGiB" is not a size`},
		{"Inf prepare_memory", base + "    backup: {prepare_memory: InfMiB}\n", `"InfMiB" is not a size`},
		{"overflowing size", base + "defaults: {chunk_size: 99999999999TiB}\n", `"99999999999TiB" is not a size`},
		{"tiny prepare_memory", base + "defaults: {prepare_memory: 1KiB}\n", "defaults.prepare_memory: 1KiB is out of range"},
		{"partial_grace shorter than a backup", base + "retention: {partial_grace: 24h}\n",
			"instances[0] (a).retention.partial_grace: 24h0m0s is not longer than one backup of this instance can take: 5 attempts × (backup.timeout 24h0m0s + temporal.agent_start_timeout 5m0s) plus retry backoff = 120h26m15s"},
		{"instance partial_grace shorter than its backups", base + "    backup: {timeout: 1h}\n    retention: {partial_grace: 5h}\n",
			"instances[0] (a).retention.partial_grace: 5h0m0s is not longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.key)
		})
	}
}

func TestValuesAtTheBoundsAreAccepted(t *testing.T) {
	for name, extra := range map[string]string{
		"empty trailing document":     "---\n",
		"short timeouts, short grace": "temporal: {agent_start_timeout: 5s, heartbeat_timeout: 5s}\ndefaults: {timeout: 1m}\nretention: {partial_grace: 7m}\n",
		"long heartbeat timeout":      "temporal: {heartbeat_timeout: 10m}\n",
		"max_concurrent 64":           "agent: {max_concurrent: 64}\n",
		"fractional size":             "defaults: {prepare_memory: 1.5GiB}\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(base + extra))
			require.NoError(t, err)
		})
	}
}

func TestMaxBackupSpanAndDefaultGrace(t *testing.T) {
	c, err := Parse([]byte(base + "temporal: {agent_start_timeout: 20s}\ndefaults: {timeout: 2m}\n"))
	require.NoError(t, err)
	in, _ := c.Instance("a")
	// 5 × (20s + 2m) + 5s + 10s + 20s + 40s.
	assert.Equal(t, 11*time.Minute+40*time.Second+75*time.Second, c.MaxBackupSpan(in))
	assert.Equal(t, 24*time.Hour, in.Retention.PartialGrace.Std(), "at least a day")

	// A grace just above the span validates; the span itself does not.
	_, err = Parse([]byte(base + "temporal: {agent_start_timeout: 20s}\ndefaults: {timeout: 2m}\nretention: {partial_grace: 12m56s}\n"))
	require.NoError(t, err)
	_, err = Parse([]byte(base + "temporal: {agent_start_timeout: 20s}\ndefaults: {timeout: 2m}\nretention: {partial_grace: 12m55s}\n"))
	require.ErrorContains(t, err, "retention.partial_grace: 12m55s")
}

func TestCheckHostMemory(t *testing.T) {
	c, err := Parse([]byte(`storage: {local: {root: r}}
agent: {max_concurrent: 2}
defaults: {chunk_size: 64MiB, parallelism: 8}
instances:
  - {id: a, host: h1, connect: {address: "x:1", user: u}, datadir: /d}
  - {id: b, host: h2, connect: {address: "x:1", user: u}, datadir: /d, backup: {parallelism: 1, prepare_memory: 8GiB}}
`))
	require.NoError(t, err)
	// a: 64MiB × 17 × 2 = 2176MiB.
	require.NoError(t, c.CheckHostMemory("h1", 2176<<20))
	err = c.CheckHostMemory("h1", 2175<<20)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "instances[0] (a).backup.chunk_size: 64MiB × (2 × parallelism 8 + 1) × agent.max_concurrent 2 = 2176MiB")
	assert.NotContains(t, err.Error(), "(b)", "only the host's instances")

	err = c.CheckHostMemory("h2", 4<<30)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "instances[1] (b).backup.prepare_memory: 8GiB is more than this machine's memory (4GiB)")
	require.NoError(t, c.CheckHostMemory("h2", 8<<30))
}

func TestMachineMemory(t *testing.T) {
	total, err := MachineMemory()
	require.NoError(t, err)
	assert.Greater(t, total, int64(64<<20))
	assert.False(t, strings.Contains(ByteSize(total).String(), "-"))
}

func TestExampleConfigValidates(t *testing.T) {
	_, err := Load("../../strata.example.yaml")
	require.NoError(t, err)
}

func TestReplayMemoryAndThreads(t *testing.T) {
	for name, tc := range map[string]struct{ archive, err string }{
		"tiny replay_memory":      {"replay_memory: 1MiB", "instances[0] (a).archive.replay_memory: 1MiB is out of range (32MiB to 1024GiB; 0 derives it from the host's memory)"},
		"huge replay_memory":      {"replay_memory: 2TiB", "instances[0] (a).archive.replay_memory: 2048GiB is out of range"},
		"negative replay_memory":  {"replay_memory: -1GiB", `"-1GiB" is not a size`},
		"negative replay_threads": {"replay_threads: -1", "instances[0] (a).archive.replay_threads: -1 is out of range"},
		"absurd replay_threads":   {"replay_threads: 20000", "instances[0] (a).archive.replay_threads: 20000 is out of range"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(base + "    archive: {" + tc.archive + "}\n"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
	for _, ok := range []string{"replay_memory: 0", "replay_memory: 32MiB", "replay_memory: 1TiB", "replay_memory: 6GiB, replay_threads: 16383", "replay_threads: 0"} {
		t.Run(ok, func(t *testing.T) {
			c, err := Parse([]byte(base + "    archive: {" + ok + "}\n"))
			require.NoError(t, err)
			assert.GreaterOrEqual(t, int64(c.Instances[0].Archive.ReplayMemory), int64(0))
		})
	}
	c, err := Parse([]byte(base + "    archive: {replay_memory: 6GiB}\n"))
	require.NoError(t, err)
	assert.Equal(t, ByteSize(6<<30), c.Instances[0].Archive.ReplayMemory)
	err = c.CheckHostMemory("h", 4<<30)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "instances[0] (a).archive.replay_memory: 6GiB is more than this machine's memory (4GiB)")
	require.NoError(t, c.CheckHostMemory("h", 8<<30))
}
