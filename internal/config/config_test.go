package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const good = `
temporal:
  address: 127.0.0.1:7233
storage:
  type: local
  local:
    root: ./repo
defaults:
  compression: zstd
  chunk_size: 8MiB
instances:
  - id: db1
    host: h1
    connect:
      address: 127.0.0.1:3306
      user: root
      password_env: DB1_PASSWORD
    datadir: /var/lib/mysql
    backup:
      compression: s2
  - id: db2
    host: h1
    connect:
      socket: /run/mysqld/mysqld.sock
      user: backup
    datadir: /data
`

func TestParseDefaultsAndOverrides(t *testing.T) {
	c, err := Parse([]byte(good))
	require.NoError(t, err)
	assert.Equal(t, "default", c.Temporal.Namespace)
	assert.Equal(t, "strata", c.Temporal.TaskQueue)
	assert.Equal(t, 5*time.Minute, c.Temporal.AgentStartTimeout.Std())
	db1, err := c.Instance("db1")
	require.NoError(t, err)
	assert.Equal(t, "s2", db1.Backup.Compression)
	assert.Equal(t, ByteSize(8<<20), db1.Backup.ChunkSize)
	db2, err := c.Instance("db2")
	require.NoError(t, err)
	assert.Equal(t, "zstd", db2.Backup.Compression)
	assert.Equal(t, 2, db2.Backup.Parallelism)
	assert.Equal(t, "strata-agent.h1", AgentTaskQueue(db2.Host))
}

func TestUnknownInstanceListsKnown(t *testing.T) {
	c, err := Parse([]byte(good))
	require.NoError(t, err)
	_, err = c.Instance("nope")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown instance "nope"`)
	assert.Contains(t, err.Error(), "db1, db2")
}

func TestValidationNamesTheKey(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"storage type": {`storage: {type: s3}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}]`, "storage.type"},
		"local root":   {`instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}]`, "storage.local.root"},
		"no instances": {`storage: {local: {root: r}}`, "instances: at least one"},
		"bad id": {`storage: {local: {root: r}}
instances: [{id: "a b", host: h, connect: {address: x:1, user: u}, datadir: /d}]`, "instances[0] (a b).id"},
		"dup id": {`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}, {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}]`, "used by two instances"},
		"no host": {`storage: {local: {root: r}}
instances: [{id: a, connect: {address: x:1, user: u}, datadir: /d}]`, "instances[0] (a).host"},
		"no connect": {`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {user: u}, datadir: /d}]`, "instances[0] (a).connect: set socket or address"},
		"compression": {`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {compression: brotli}}]`, "instances[0] (a).backup.compression"},
		"compression list": {`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {compression: lz5}}]`, "use zstd, lz4, s2, gzip or none"},
		"lz4 level": {`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {compression: lz4, compression_level: 11}}]`, "11 is out of range for lz4 (0 = codec default; zstd 1-19, lz4 1-10,"},
		"gzip level": {`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {compression: gzip, compression_level: 12}}]`, "out of range for gzip"},
		"chunk size": {`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {chunk_size: 1KiB}}]`, "chunk_size"},
		"unknown key": {`storage: {local: {root: r}}
instnces: []`, "field instnces not found"},
		"bad duration": {`temporal: {agent_start_timeout: soon}
storage: {local: {root: r}}`, "not a duration"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// lz4 is a codec like the others, levels 1-10.
func TestLZ4Compression(t *testing.T) {
	for _, level := range []int{0, 1, 10} {
		c, err := Parse([]byte(fmt.Sprintf(`storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {compression: lz4, compression_level: %d}}]`, level)))
		require.NoError(t, err, "level %d", level)
		assert.Equal(t, "lz4", c.Instances[0].Backup.Compression)
		assert.Equal(t, level, c.Instances[0].Backup.CompressionLevel)
	}
}

func TestPasswordFromEnvAndFile(t *testing.T) {
	in := Instance{ID: "a", Connect: Connect{PasswordEnv: "STRATA_TEST_PW"}}
	_, err := in.Password()
	require.ErrorContains(t, err, "STRATA_TEST_PW")
	t.Setenv("STRATA_TEST_PW", "s3cret")
	pw, err := in.Password()
	require.NoError(t, err)
	assert.Equal(t, "s3cret", pw)

	f := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(f, []byte("fromfile\n"), 0o600))
	in = Instance{ID: "a", Connect: Connect{PasswordFile: f}}
	pw, err = in.Password()
	require.NoError(t, err)
	assert.Equal(t, "fromfile", pw)
}

func TestLoadMissingFileSaysWhatToDo(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	require.ErrorContains(t, err, "--config")
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"123": 123, "64KiB": 64 << 10, "16MiB": 16 << 20, "1GiB": 1 << 30, "16MB": 16e6, "2G": 2 << 30} {
		got, err := ParseByteSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseByteSize("lots")
	require.Error(t, err)
}

func TestRetentionAndChainDefaults(t *testing.T) {
	c, err := Parse([]byte(`
storage: {local: {root: r}}
retention: {keep_full: 2, keep_days: 7}
defaults: {max_chain_length: 6}
instances:
  - {id: a, host: h, connect: {address: "x:1", user: u}, datadir: /d}
  - {id: b, host: h, connect: {address: "x:1", user: u}, datadir: /d, retention: {keep_full: 5, keep_min: 3}, backup: {max_chain_length: 2}}
`))
	require.NoError(t, err)
	a, _ := c.Instance("a")
	b, _ := c.Instance("b")
	// partial_grace defaults to the longest a backup can take (5 × (24h +
	// 5m) + 75s of backoff) plus an hour, rounded up to hours.
	assert.Equal(t, Retention{KeepFull: 2, KeepDays: 7, PartialGrace: Duration(122 * time.Hour)}, a.Retention)
	assert.Equal(t, Retention{KeepFull: 5, KeepDays: 7, KeepMin: 3, PartialGrace: Duration(122 * time.Hour)}, b.Retention)
	assert.Equal(t, 6, a.Backup.MaxChainLength)
	assert.Equal(t, 2, b.Backup.MaxChainLength)

	_, err = Parse([]byte(`
storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: "x:1", user: u}, datadir: /d, retention: {keep_days: -1}}]`))
	require.ErrorContains(t, err, "instances[0] (a).retention.keep_days")
}

// keep_days is bounded: 106752 days overflowed the 24-hour arithmetic of
// the cut-off and deleted every backup.
func TestRetentionKeepDaysBounded(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want string // empty: valid
	}{
		{`retention: {keep_days: 36500}`, ""},
		{`retention: {keep_days: 36501}`, "retention.keep_days: 36501 is too large"},
		{`retention: {keep_days: 106752}`, "retention.keep_days: 106752 is too large"},
		{`retention: {keep_days: 9223372036854775807}`, "retention.keep_days"},
	} {
		_, err := Parse([]byte(tc.yaml + `
storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: "x:1", user: u}, datadir: /d}]`))
		if tc.want == "" {
			require.NoError(t, err, tc.yaml)
		} else {
			require.ErrorContains(t, err, tc.want, tc.yaml)
		}
	}
	_, err := Parse([]byte(`
storage: {local: {root: r}}
instances: [{id: a, host: h, connect: {address: "x:1", user: u}, datadir: /d, retention: {keep_days: 200000}}]`))
	require.ErrorContains(t, err, "instances[0] (a).retention.keep_days: 200000 is too large")
}
