package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const policyBase = `
storage:
  type: local
  local:
    root: ./repo
defaults:
  throttle: 8MiB
schedule:
  full: "0 2 * * *"
  incremental_every: 1h
  verify: "@weekly"
  prune:
    hour: "3"
    minute: "30"
  drill: "0 4 1 * *"
  time_zone: Europe/Berlin
  jitter: 30m
instances:
  - id: db1
    host: h1
    connect: {address: 127.0.0.1:3306, user: root}
    datadir: /var/lib/mysql
%s
  - id: db2
    host: h2
    connect: {address: 127.0.0.1:3307, user: root}
    datadir: /data
`

func parsePolicy(t *testing.T, db1 string) (*Config, error) {
	t.Helper()
	return Parse([]byte(strings.Replace(policyBase, "%s", db1, 1)))
}

func TestPolicyDefaultsAndOverrides(t *testing.T) {
	c, err := parsePolicy(t, `    backup:
      throttle: 1MiB
      compression: gzip
      compression_level: 6
      max_chain_length: 5
    schedule:
      full:
        hour: "1"
        day_of_week: "1-5"
      incremental_every: "off"
      time_zone: UTC
      catchup_window: 10m`)
	require.NoError(t, err)
	db1, _ := c.Instance("db1")
	db2, _ := c.Instance("db2")

	assert.Equal(t, ByteSize(1<<20), db1.Backup.Throttle)
	assert.Equal(t, ByteSize(8<<20), db2.Backup.Throttle, "inherited from defaults")
	assert.Equal(t, "gzip", db1.Backup.Compression)
	assert.Equal(t, 5, db1.Backup.MaxChainLength)

	s1, s2 := db1.Schedule, db2.Schedule
	require.NotNil(t, s1.Full.Calendar)
	assert.Equal(t, "1", s1.Full.Calendar.Hour)
	assert.False(t, s1.IncrementalEvery.Active(), "off overrides the fleet's interval")
	assert.True(t, s1.IncrementalEvery.IsSet())
	assert.Equal(t, "UTC", s1.TimeZone)
	assert.Equal(t, 10*time.Minute, s1.CatchupWindow.Std())
	assert.Equal(t, "@weekly", s1.Verify.Cron, "unset fields inherit")
	assert.Equal(t, 30*time.Minute, s1.Jitter.Std())

	assert.Equal(t, "0 2 * * *", s2.Full.Cron)
	assert.Equal(t, time.Hour, s2.IncrementalEvery.Every.Std())
	assert.Equal(t, "Europe/Berlin", s2.TimeZone)
	assert.Equal(t, DefaultCatchupWindow, s2.CatchupWindow, "default catch-up window")
	assert.Equal(t, "30", s2.Prune.Calendar.Minute)
	assert.True(t, s2.Drill.Active(), "drill is accepted")
}

// An existing config without any policy stays valid and schedules nothing.
func TestPolicyOptional(t *testing.T) {
	c, err := Parse([]byte(good))
	require.NoError(t, err)
	for _, in := range c.Instances {
		assert.False(t, in.Schedule.Full.Active())
		assert.False(t, in.Schedule.IncrementalEvery.Active())
		assert.Equal(t, ByteSize(0), in.Backup.Throttle)
	}
}

func TestPolicyValidationNamesTheKey(t *testing.T) {
	cases := map[string]struct{ db1, key string }{
		"cron fields":      {"    schedule:\n      full: \"0 2 * *\"", "instances[0] (db1).schedule.full"},
		"cron range":       {"    schedule:\n      verify: \"0 25 * * *\"", "instances[0] (db1).schedule.verify"},
		"cron word":        {"    schedule:\n      prune: \"@sometimes\"", "instances[0] (db1).schedule.prune"},
		"calendar range":   {"    schedule:\n      full: {hour: \"24\"}", "instances[0] (db1).schedule.full"},
		"calendar unknown": {"    schedule:\n      full: {hours: \"2\"}", "calendar field \"hours\""},
		"zone":             {"    schedule:\n      time_zone: Mars/Olympus", "instances[0] (db1).schedule.time_zone"},
		"interval":         {"    schedule:\n      incremental_every: 10s", "instances[0] (db1).schedule.incremental_every"},
		"catchup short":    {"    schedule:\n      catchup_window: 1s", "instances[0] (db1).schedule.catchup_window"},
		"jitter":           {"    schedule:\n      jitter: -1m", "instances[0] (db1).schedule.jitter"},
		"throttle low":     {"    backup:\n      throttle: 1KiB", "instances[0] (db1).backup.throttle"},
		"drill":            {"    schedule:\n      drill: \"x\"", "instances[0] (db1).schedule.drill"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parsePolicy(t, tc.db1)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.key)
		})
	}
}

// A bad fleet default is reported once, under its own key, not again for
// every instance that inherits it.
func TestPolicyBadDefaultReportedOnce(t *testing.T) {
	_, err := Parse([]byte(strings.Replace(strings.Replace(policyBase, "%s", "", 1), `full: "0 2 * * *"`, `full: "0 2 * * * *"`, 1)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "schedule.full:")
	assert.Equal(t, 1, strings.Count(err.Error(), "schedule.full"), err.Error())
}

func TestParseCronField(t *testing.T) {
	rs, err := ParseCronField("1-5,10,*/15", 0, 59)
	require.NoError(t, err)
	assert.Equal(t, []CronRange{{1, 5, 1}, {10, 10, 1}, {0, 59, 15}}, rs)
	rs, err = ParseCronField("5/10", 0, 59)
	require.NoError(t, err)
	assert.Equal(t, []CronRange{{5, 59, 10}}, rs)
	for _, bad := range []string{"", "a", "5-1", "1-60", "*/0", "1,,2"} {
		_, err := ParseCronField(bad, 0, 59)
		assert.Error(t, err, bad)
	}
	assert.NoError(t, checkCron("30 2 * jan-mar mon-fri"))
}

func TestWatcherReloadsAndKeepsOldOnInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "strata.yaml")
	write := func(db1 string) {
		require.NoError(t, os.WriteFile(path, []byte(strings.Replace(policyBase, "%s", db1, 1)), 0o600))
	}
	write("    backup:\n      throttle: 1MiB")
	c, err := Load(path)
	require.NoError(t, err)
	core, logs := observer.New(zap.InfoLevel)
	w := NewWatcher(c, time.Second, zap.New(core))
	var got []string
	w.OnChange(func(old, cur *Config) { got = append(got, Changes(old, cur)...) })

	changed, err := w.Check()
	require.NoError(t, err)
	assert.False(t, changed, "the file is unchanged")

	write("    backup:\n      throttle: 4MiB")
	changed, err = w.Check()
	require.NoError(t, err)
	assert.True(t, changed)
	db1, _ := w.Current().Instance("db1")
	assert.Equal(t, ByteSize(4<<20), db1.Backup.Throttle)
	assert.Equal(t, []string{"instances[db1].backup.throttle: 1MiB -> 4MiB"}, got)
	assert.Equal(t, 1, logs.FilterMessage("policy reloaded").Len())

	write("    backup:\n      throttle: 1KiB")
	changed, err = w.Check()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "instances[0] (db1).backup.throttle")
	assert.False(t, changed)
	db1, _ = w.Current().Instance("db1")
	assert.Equal(t, ByteSize(4<<20), db1.Backup.Throttle, "the old policy stays in force")
	bad := logs.FilterMessageSnippet("invalid").All()
	require.Len(t, bad, 1)
	assert.Contains(t, bad[0].ContextMap()["error"], "backup.throttle")
	_, err = w.Check()
	require.NoError(t, err, "an invalid file is reported once, not on every poll")
	assert.Len(t, got, 1, "no OnChange for the invalid file")
}

func TestChangesListsInstancesAndSchedules(t *testing.T) {
	a, err := parsePolicy(t, "")
	require.NoError(t, err)
	b, err := parsePolicy(t, "    schedule:\n      full: \"0 3 * * *\"")
	require.NoError(t, err)
	b.Instances = b.Instances[:1]
	b.Agent.MaxConcurrentHeavy = 2
	assert.ElementsMatch(t, []string{
		"agent.max_concurrent: 1 -> 2",
		"instances[db1].schedule.full: 0 2 * * * -> 0 3 * * *",
		"instances[db2]: removed",
	}, Changes(a, b))
}
