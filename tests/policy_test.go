package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/workflows"
)

// mibps is a backup's raw stream rate in MiB/s over its whole activity.
func mibps(r workflows.BackupResult) float64 {
	return float64(r.RawSize) / (1 << 20) / r.DurationSeconds
}

func throttleOf(t *testing.T, w *config.Watcher) config.ByteSize {
	in, err := w.Current().Instance("db1")
	require.NoError(t, err)
	return in.Backup.Throttle
}

// The throttle is read from the live policy when a backup starts: edited
// in the file while the worker and the agent run, it changes the rate of
// the next backup, and the worker applies the new policy's schedules; an
// invalid edit is refused (logged with its key) and the old policy stays in
// force.
func TestPolicyReloadChangesThrottleAndKeepsOldOnInvalid(t *testing.T) {
	s := newStack(t)
	s.seeded(2 << 20)
	s.editConfig("defaults:\n", "defaults:\n  throttle: 4MiB\n")
	watch, logs := s.followPolicy(500 * time.Millisecond)
	require.Equal(t, config.ByteSize(4<<20), throttleOf(t, watch))

	slow := s.backupOf("db1", "slow", "full")
	t.Logf("throttle 4MiB/s: %d bytes in %.1fs = %.2f MiB/s", slow.RawSize, slow.DurationSeconds, mibps(slow))
	require.Greater(t, slow.RawSize, int64(8<<20), "enough data to measure a rate")
	// At most the limit, plus the limiter's 1MiB burst over the whole run.
	assert.LessOrEqual(t, mibps(slow), 4.0+1.0/slow.DurationSeconds+0.1)

	// A new policy through `strata policy apply`: validated, then installed.
	next := filepath.Join(t.TempDir(), "next.yaml")
	// It also adds a schedule, which the worker applies when it reloads.
	require.NoError(t, os.WriteFile(next, []byte(strings.Replace(s.readConfig(), "throttle: 4MiB", "throttle: 256MiB", 1)+
		"schedule:\n  full: \"0 3 * * *\"\n"), 0o600))
	out, err := s.cli("policy", "apply", next)
	require.NoError(t, err, out)
	assert.Contains(t, out, "instances[db1].backup.throttle: 4MiB -> 256MiB")
	require.Eventually(t, func() bool { return throttleOf(t, watch) == 256<<20 }, time.Minute, 100*time.Millisecond,
		"the agent reloads the installed policy")
	assert.NotZero(t, logs.FilterMessage("policy reloaded").Len())
	require.Eventually(t, func() bool {
		_, err := s.client.ScheduleClient().GetHandle(s.ctx, workflows.ScheduleID("db1", "full")).Describe(s.ctx)
		return err == nil
	}, time.Minute, 200*time.Millisecond, "the worker re-applies the schedules of the new policy")
	assert.NotZero(t, logs.FilterMessage("schedule re-applied after a policy change").Len())

	fast := s.backupOf("db1", "fast", "full")
	t.Logf("throttle 256MiB/s: %d bytes in %.1fs = %.2f MiB/s", fast.RawSize, fast.DurationSeconds, mibps(fast))
	assert.Greater(t, mibps(fast), 8.0, "the next backup runs at the new rate, twice the old limit or more")

	// An invalid policy is refused by `strata policy apply`, naming the key...
	bad := strings.Replace(s.readConfig(), "throttle: 256MiB", "throttle: 1KiB", 1)
	require.NoError(t, os.WriteFile(next, []byte(bad), 0o600))
	before := s.readConfig()
	out, err = s.cli("policy", "apply", next)
	require.Error(t, err)
	assert.Contains(t, out, "instances[0] (db1).backup.throttle")
	assert.Equal(t, before, s.readConfig(), "an invalid policy is not installed")

	// ...and, edited into the file by hand, rejected by the watchers, which
	// log the key and keep the old policy.
	s.writeConfig(bad)
	require.Eventually(t, func() bool {
		for _, e := range logs.FilterMessageSnippet("invalid").All() {
			if strings.Contains(e.ContextMap()["error"].(string), "instances[0] (db1).backup.throttle") {
				return true
			}
		}
		return false
	}, time.Minute, 100*time.Millisecond, "the invalid file is rejected, naming the key")
	assert.Equal(t, config.ByteSize(256<<20), throttleOf(t, watch), "the old policy stays in force")
	still := s.backupOf("db1", "still", "full")
	t.Logf("after the invalid edit: %.2f MiB/s", mibps(still))
	assert.Greater(t, mibps(still), 8.0, "a backup after the invalid edit runs under the old policy, not at 1KiB/s")
	_, err = s.client.ScheduleClient().GetHandle(s.ctx, workflows.ScheduleID("db1", "full")).Describe(s.ctx)
	require.NoError(t, err, "the invalid file changed no schedule")
}
