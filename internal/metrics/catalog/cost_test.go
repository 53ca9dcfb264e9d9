package catalog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// steadyRequests is the bound on the requests of a refresh of an
// unchanged instance: the backup ids, the drill reports and the archive's
// open tail, a listing each.
const steadyRequests = 3

// TestRefreshCost measures, with the counting backend, what refreshes cost
// on an instance of 30 backups of 1,600 chunks, an archive with a roll-up
// and drill reports (and on an empty one): an unchanged instance costs
// steadyRequests, and each change is seen by the next refresh, at the cost
// of the objects it wrote.
func TestRefreshCost(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	cb := counting.New(mem)
	r := repo.New(cb)
	const inst, empty = "cost1", "cost2"
	cfg := mustConfig(t, strings.NewReplacer("cat1", inst, "cat2", empty).Replace(policy))
	now := t0.Add(40 * 24 * time.Hour)
	ref := &Refresher{Repo: r, Config: func() *config.Config { return cfg }, Now: func() time.Time { return now }}
	l := func(kv ...string) map[string]string {
		m := map[string]string{"instance": inst}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	// 30 daily fulls of 1,600 chunks, the oldest covered by the archive.
	var newest *manifest.Manifest
	for d := 0; d < 30; d++ {
		id := fmt.Sprintf("b%02d", d)
		m := newManifest(inst, id, manifest.TypeFull, t0.Add(time.Duration(d)*24*time.Hour), time.Minute, "binlog.000001", 100)
		for c := 0; c < 1600; c++ {
			plant(t, mem, fmt.Sprintf("%schunks/%08d.zst", repo.BackupPrefix(inst, id), c), []byte("c"))
		}
		require.NoError(t, r.WriteManifest(ctx, m))
		newest = m
	}
	st := &binlog.Store{B: mem, Instance: inst}
	seg := func(seq uint64, file string, start, end uint32, last time.Time) {
		t.Helper()
		require.NoError(t, st.WriteSegment(ctx, &binlog.Segment{Seq: seq, File: file, Start: start, End: end,
			FirstTime: last.Add(-time.Second), LastTime: last, Events: 1}, make([]byte, end-start)))
	}
	seg(1, "binlog.000001", 4, 200, t0.Add(time.Hour))
	seg(2, "binlog.000001", 200, 400, t0.Add(2*time.Hour))
	seg(3, "binlog.000002", 4, 100, t0.Add(25*time.Hour))
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	n, err := st.RollUp(ctx, ix)
	require.NoError(t, err)
	require.Equal(t, 1, n, "binlog.000001 rolled up")
	plantDrill(t, mem, drill.ReportKey(inst, "d1"), report(inst, "d1", drill.ResultPassed, t0.Add(20*24*time.Hour)))

	require.NoError(t, ref.Refresh(ctx)) // the first refresh reads everything
	requireGauge(t, unix(newest.EndTime), "strata_backup_last_success_timestamp_seconds", l("type", "full"))
	requireGauge(t, unix(t0.Add(25*time.Hour)), "strata_pitr_window_end_timestamp_seconds", l())
	requireGauge(t, unix(t0.Add(time.Minute)), "strata_pitr_window_start_timestamp_seconds", l())

	steady := func(what string) {
		t.Helper()
		now = now.Add(time.Minute)
		cb.Reset()
		require.NoError(t, ref.Refresh(ctx))
		c := cb.Counts()
		assert.LessOrEqual(t, c.Requests(), 2*steadyRequests, "%s: a refresh of 2 unchanged instances: %s", what, c)
		assert.Zero(t, c.Get, "%s: %s", what, c)
	}
	changed := func(what string, gets int) {
		t.Helper()
		now = now.Add(time.Minute)
		cb.Reset()
		require.NoError(t, ref.Refresh(ctx))
		c := cb.Counts()
		assert.Equal(t, gets, c.Get, "%s: %s", what, c)
		assert.LessOrEqual(t, c.ListPages, 2*steadyRequests+3, "%s: %s", what, c)
	}
	steady("unchanged")
	steady("unchanged again")

	// A new backup: its manifest is read, once.
	nb := newManifest(inst, "new", manifest.TypeIncremental, now.Add(-10*time.Minute), 5*time.Minute, "", 0)
	nb.ParentID = newest.BackupID
	plant(t, mem, repo.BackupPrefix(inst, "new")+"chunks/00000000.zst", []byte("c"))
	require.NoError(t, r.WriteManifest(ctx, nb))
	changed("a new backup", 1)
	requireGauge(t, unix(nb.EndTime), "strata_backup_last_success_timestamp_seconds", l("type", "incremental"))
	steady("after the new backup")

	// A running backup: looked for with a back-off, seen once complete.
	run := newManifest(inst, "run", manifest.TypeIncremental, now, 12*time.Minute, "", 0)
	run.ParentID = newest.BackupID
	plant(t, mem, repo.BackupPrefix(inst, "run")+"chunks/00000000.zst", []byte("c"))
	changed("a partial backup", 1)
	changed("a partial backup, a minute old", 1)
	now = now.Add(8 * time.Minute)
	changed("a partial backup, 10 minutes old", 1) // next look after 2.5 minutes
	steady("a partial backup looked for a minute ago")
	now = now.Add(time.Minute)
	run.EndTime = now.Add(-30 * time.Second)
	require.NoError(t, r.WriteManifest(ctx, run))
	changed("a partial backup, complete since", 1)
	requireGauge(t, unix(run.EndTime), "strata_backup_last_success_timestamp_seconds", l("type", "incremental"))
	steady("after the complete backup")

	// A new drill report.
	plantDrill(t, mem, drill.ReportKey(inst, "d2"), report(inst, "d2", drill.ResultFailed, now))
	changed("a new drill report", 1)
	requireGauge(t, 0, "strata_drill_last_result", l())
	requireGauge(t, 1, "strata_drills_total", l("result", drill.ResultFailed))
	steady("after the drill")

	// New archive segments: the records written since are read.
	at := now
	seg(4, "binlog.000002", 100, 300, at)
	seg(5, "binlog.000002", 300, 400, at.Add(time.Second))
	changed("two new segments", 2)
	requireGauge(t, unix(at.Add(time.Second)), "strata_pitr_window_end_timestamp_seconds", l())
	steady("after the segments")

	// binlog.000002 closes and is rolled up: the whole index is read again
	// (the new roll-up, not the older ones: cached); then a new segment
	// costs its record.
	at = now
	seg(6, "binlog.000003", 4, 100, at)
	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	n, err = st.RollUp(ctx, ix)
	require.NoError(t, err)
	require.Equal(t, 1, n, "binlog.000002 rolled up")
	now = now.Add(time.Minute)
	require.NoError(t, ref.Refresh(ctx))
	requireGauge(t, unix(at), "strata_pitr_window_end_timestamp_seconds", l())
	requireGauge(t, unix(t0.Add(time.Minute)), "strata_pitr_window_start_timestamp_seconds", l())
	requireGauge(t, 0, "strata_pitr_window_gaps", l())
	steady("after the roll-up")
	seg(7, "binlog.000003", 100, 200, at.Add(2*time.Second))
	changed("a segment after the roll-up", 1)
	requireGauge(t, unix(at.Add(2*time.Second)), "strata_pitr_window_end_timestamp_seconds", l())
	requireGauge(t, unix(t0.Add(time.Minute)), "strata_pitr_window_start_timestamp_seconds", l())
	requireGauge(t, 0, "strata_pitr_window_gaps", l())
	steady("after it")

	// Retention deletes the newest backups (data and manifest): the next
	// refresh shows the one before.
	for _, id := range []string{"new", "run"} {
		require.NoError(t, r.DeleteBackupData(ctx, inst, id))
		require.NoError(t, r.DeleteManifest(ctx, inst, id))
	}
	steady("two backups deleted")
	_, ok := gauge(t, "strata_backup_last_success_timestamp_seconds", l("type", "incremental"))
	assert.False(t, ok, "the deleted incrementals are not shown")

	// A manifest deleted elsewhere while the backup's data stays is seen by
	// the backstop.
	require.NoError(t, r.DeleteManifest(ctx, inst, newest.BackupID))
	steady("a manifest deleted elsewhere")
	now = now.Add(DefaultBackstop)
	cb.Reset()
	require.NoError(t, ref.Refresh(ctx))
	assert.Greater(t, cb.Counts().ListPages, 40, "the backstop lists every object: %s", cb.Counts())
	prev := newManifest(inst, "b28", manifest.TypeFull, t0.Add(28*24*time.Hour), time.Minute, "", 0)
	requireGauge(t, unix(prev.EndTime), "strata_backup_last_success_timestamp_seconds", l("type", "full"))
	steady("after the backstop")

	// And by the next refresh after MarkChanged (a retention completed on
	// this worker).
	require.NoError(t, r.DeleteManifest(ctx, inst, "b28"))
	ref.MarkChanged(inst, true)
	now = now.Add(time.Minute)
	require.NoError(t, ref.Refresh(ctx))
	prev = newManifest(inst, "b27", manifest.TypeFull, t0.Add(27*24*time.Hour), time.Minute, "", 0)
	requireGauge(t, unix(prev.EndTime), "strata_backup_last_success_timestamp_seconds", l("type", "full"))
	steady("after the changed refresh")
	// Their data goes too (abandoned partial backups would be looked for
	// with the back-off, each a get).
	require.NoError(t, r.DeleteBackupData(ctx, inst, newest.BackupID))
	require.NoError(t, r.DeleteBackupData(ctx, inst, "b28"))
	steady("after the data went")

	// A backup that completes on this worker (MarkChanged without
	// deletion) is seen at once, also when its back-off would wait.
	slow := newManifest(inst, "slow", manifest.TypeDifferential, now, 30*time.Minute, "", 0)
	slow.ParentID = "b27"
	plant(t, mem, repo.BackupPrefix(inst, "slow")+"chunks/00000000.zst", []byte("c"))
	changed("a partial backup", 1)
	now = now.Add(20 * time.Minute)
	changed("a partial backup, 20 minutes old", 1)
	steady("a partial backup looked for a minute ago")
	slow.EndTime = now
	require.NoError(t, r.WriteManifest(ctx, slow))
	ref.MarkChanged(inst, false)
	changed("a backup completed on this worker", 1)
	requireGauge(t, unix(slow.EndTime), "strata_backup_last_success_timestamp_seconds", l("type", "differential"))
	steady("after it")
}
