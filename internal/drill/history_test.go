package drill_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

func rep(id, backup, result, phase, target string, at time.Time) *drill.Report {
	r := &drill.Report{DrillID: id, Instance: "db1", BackupID: backup, Result: result, FailedPhase: phase, Target: target, Started: at}
	r.ErrorType = map[string]string{drill.PhaseRestore: "CorruptBackup", drill.PhaseStart: "ToolFailed", drill.PhaseVerify: "VerificationFailed"}[phase]
	return r
}

func TestHistoryIsNewestFirstAndWriteIsIdempotent(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	for i, id := range []string{"d2", "d1", "d3"} {
		require.NoError(t, drill.Write(ctx, b, rep(id, "b1", drill.ResultPassed, "", "", t0.Add(time.Duration([]int{2, 1, 3}[i])*time.Hour))))
	}
	require.NoError(t, drill.Write(ctx, b, rep("d1", "b1", drill.ResultPassed, "", "", t0)), "a retried write of the same drill")
	// Not a report: ignored when not named <id>.json, an error otherwise.
	require.NoError(t, b.Put(ctx, "db1/drills/notes.txt", bytes.NewReader([]byte("x")), 1))
	h, err := drill.History(ctx, b, "db1")
	require.NoError(t, err)
	var ids []string
	for _, r := range h {
		ids = append(ids, r.DrillID)
	}
	assert.Equal(t, []string{"d3", "d2", "d1"}, ids)
	require.NoError(t, b.Put(ctx, "db1/drills/bad.json", bytes.NewReader([]byte("{}")), 2))
	_, err = drill.History(ctx, b, "db1")
	assert.ErrorContains(t, err, "db1/drills/bad.json")
	h, err = drill.History(ctx, b, "db2")
	require.NoError(t, err)
	assert.Empty(t, h)
}

func TestFailedTakesTheNewestDrillThatJudgedEachBackup(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	history := []*drill.Report{ // newest first
		rep("d9", "b1", drill.ResultFailed, drill.PhaseReplay, "GTID 0-1-9", at(9)), // the archive's fault: says nothing of b1
		rep("d8", "b1", drill.ResultPassed, "", "", at(8)),                          // b1 passed after failing
		rep("d7", "b1", drill.ResultFailed, drill.PhaseRestore, "", at(7)),
		rep("d6", "b2", drill.ResultFailed, drill.PhaseVerify, "", at(6)), // b2's own data is wrong
		rep("d5", "b3", drill.ResultFailed, drill.PhaseVerify, "GTID 0-1-5", at(5)),
		rep("d4", "b4", drill.ResultFailed, "", "", at(4)), // no agent: says nothing
		rep("d3", "b5", drill.ResultFailed, drill.PhaseStart, "", at(3)),
		rep("d2", "b5", drill.ResultPassed, "", "", at(2)), // older than the failure
		{DrillID: "d1", Instance: "db1", BackupID: "b6", Result: drill.ResultFailed, FailedPhase: drill.PhaseRestore,
			ErrorType: "AgentUnavailable", Started: at(1)}, // no agent took the restore: says nothing
		{DrillID: "d0", Instance: "db1", BackupID: "b7", Result: drill.ResultFailed, FailedPhase: drill.PhaseVerify,
			ErrorType: "ServerUnreachable", Started: at(0)}, // could not verify: says nothing
	}
	f := drill.Failed(history)
	assert.Len(t, f, 2)
	assert.Equal(t, "d6", f["b2"].DrillID)
	assert.Equal(t, "d3", f["b5"].DrillID)
	assert.Nil(t, f["b1"])
	assert.Nil(t, f["b3"])
	assert.Nil(t, f["b4"])
	assert.Nil(t, f["b6"])
	assert.Nil(t, f["b7"])
}

func TestMergeAndCompareGTIDSets(t *testing.T) {
	m, err := drill.MergeGTID("0-1-10,1-2-5", "1-3-9", "2-1-1")
	require.NoError(t, err)
	assert.Equal(t, "0-1-10,1-3-9,2-1-1", m)
	m, err = drill.MergeGTID("", "0-1-4")
	require.NoError(t, err)
	assert.Equal(t, "0-1-4", m)
	_, err = drill.MergeGTID("0-1-x")
	assert.Error(t, err)
	for _, c := range []struct {
		want, got string
		same      bool
	}{
		{"0-1-10", "0-1-10", true},
		{"0-1-10,1-1-2", "1-1-2, 0-1-10", true},
		{"0-1-10", "0-1-9", false},
		{"0-1-10", "0-1-10,1-1-1", false},
		{"0-1-10", "", false},
		{"", "", true},
	} {
		same, err := drill.SameGTIDSet(c.want, c.got)
		require.NoError(t, err)
		assert.Equal(t, c.same, same, "%q vs %q", c.want, c.got)
	}
}

func TestScratchPrepareTeardownAndSweep(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	_, err := drill.ScratchFor("relative", "db1", "d1")
	assert.Error(t, err)
	_, err = drill.ScratchFor(root, "db1", "../escape")
	assert.Error(t, err)
	for _, inst := range []string{"..", ".", "../x", "a/b", ""} {
		_, err = drill.ScratchFor(root, inst, "d1")
		assert.Error(t, err, "instance %q", inst)
	}
	s, err := drill.ScratchFor(root, "db1", "d1")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "drills", "db1", "d1"), s.Dir)
	assert.Equal(t, filepath.Join(s.Dir, "data"), s.Datadir)
	require.NoError(t, s.Prepare(ctx))
	require.NoError(t, os.MkdirAll(s.Datadir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(s.Datadir, "ibdata1"), []byte("x"), 0o600))
	require.NoError(t, s.Prepare(ctx), "a retried prepare starts from nothing")
	_, err = os.Stat(s.Datadir)
	assert.True(t, os.IsNotExist(err))
	require.NoError(t, s.Teardown(ctx))
	require.NoError(t, s.Teardown(ctx), "idempotent")
	_, err = os.Stat(s.Dir)
	assert.True(t, os.IsNotExist(err))

	// Left by a killed agent: swept.
	for _, id := range []string{"a", "b"} {
		l, err := drill.ScratchFor(root, "db"+id, id)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(l.Datadir, 0o700))
	}
	// And one of the older one-level layout (<scratch>/drills/<drill id>).
	require.NoError(t, os.MkdirAll(filepath.Join(root, "drills", "old", "data"), 0o700))
	removed, err := drill.Sweep(ctx, root)
	require.NoError(t, err)
	assert.Len(t, removed, 3)
	ents, err := os.ReadDir(filepath.Join(root, "drills"))
	require.NoError(t, err)
	assert.Empty(t, ents)
	removed, err = drill.Sweep(ctx, t.TempDir())
	require.NoError(t, err)
	assert.Empty(t, removed)
}

// Drill ids are unique per instance only (a scheduled drill's id is its
// start time): two instances drilled on one drill host in the same second
// must not share a scratch dir, or the second's PrepareDrill tears down the
// first's server and files.
func TestScratchOfTwoInstancesWithTheSameDrillIDAreApart(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	a, err := drill.ScratchFor(root, "db1", "20261124T084500Z")
	require.NoError(t, err)
	b, err := drill.ScratchFor(root, "db2", "20261124T084500Z")
	require.NoError(t, err)
	assert.NotEqual(t, a.Dir, b.Dir)
	require.NoError(t, a.Prepare(ctx))
	require.NoError(t, os.MkdirAll(a.Datadir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(a.Datadir, "ibdata1"), []byte("x"), 0o600))
	require.NoError(t, b.Prepare(ctx))
	require.NoError(t, b.Teardown(ctx))
	_, err = os.Stat(filepath.Join(a.Datadir, "ibdata1"))
	assert.NoError(t, err, "the other instance's drill left db1's datadir alone")
}

// A server left running in a drill dir of the per-instance layout is
// stopped by the sweep too.
func TestSweepStopsAServerLeftRunningInAnInstancesDrillDir(t *testing.T) {
	testdb.Require(t)
	ctx := context.Background()
	root := t.TempDir()
	srv, err := testdb.Init(ctx, testdb.Options{BaseDir: filepath.Join(root, "drills", "db1", "killed")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	_, running := server.Running(srv.Datadir)
	require.True(t, running, "the left-over server runs on %s", srv.Datadir)
	removed, err := drill.Sweep(ctx, root)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(root, "drills", "db1")}, removed)
	_, running = server.Running(srv.Datadir)
	assert.False(t, running, "the sweep stopped it")
}

func TestSweepStopsAServerLeftRunningInADrillDir(t *testing.T) {
	testdb.Require(t)
	ctx := context.Background()
	root := t.TempDir()
	srv, err := testdb.Init(ctx, testdb.Options{BaseDir: filepath.Join(root, "drills", "killed")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	_, running := server.Running(srv.Datadir)
	require.True(t, running, "the left-over server runs on %s", srv.Datadir)
	removed, err := drill.Sweep(ctx, root)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(root, "drills", "killed")}, removed)
	_, running = server.Running(srv.Datadir)
	assert.False(t, running, "the sweep stopped it")
	_, err = os.Stat(srv.Datadir)
	assert.True(t, os.IsNotExist(err))
}

// A second drill with the id of an earlier one does not lose its report
// silently, nor replace the earlier one's.
func TestWriteRefusesTheReportOfAnotherRunAtTheSameKey(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	first := rep("d1", "b1", drill.ResultFailed, drill.PhaseRestore, "", time.Unix(0, 0).UTC())
	first.WorkflowID, first.RunID = "drill/db1/d1", "r1"
	require.NoError(t, drill.Write(ctx, b, first))
	require.NoError(t, drill.Write(ctx, b, first), "a retried write of the same run")
	second := *first
	second.RunID, second.Result = "r2", drill.ResultPassed
	err := drill.Write(ctx, b, &second)
	assert.ErrorIs(t, err, drill.ErrReportExists)
	assert.ErrorContains(t, err, "another id")
	got, err := drill.Read(ctx, b, "db1", "d1")
	require.NoError(t, err)
	assert.Equal(t, "r1", got.RunID)
	assert.Equal(t, drill.ResultFailed, got.Result)

	require.NoError(t, b.Put(ctx, "db1/drills/bad.json", bytes.NewReader([]byte("{}")), 2))
	_, err = drill.History(ctx, b, "db1")
	assert.ErrorIs(t, err, drill.ErrBadReport)
}

// A drill agent without the backup's key encryption key is the agent's
// configuration: its failed restore does not mark the backup.
func TestRestoreOnAnAgentWithoutTheKeyDoesNotMark(t *testing.T) {
	r := rep("d1", "b1", drill.ResultFailed, drill.PhaseRestore, "", time.Unix(0, 0))
	r.ErrorType = "DecryptFailed"
	assert.True(t, r.MarksBackup(), "a backup that does not decrypt with the key")
	r.KeyNotHeld = true
	assert.False(t, r.MarksBackup())
	assert.Empty(t, drill.Failed([]*drill.Report{r}))
}

// A report at another instance's or drill's key (copied there) is not this
// instance's history: its backup ids would mark this instance's backups.
func TestReadRefusesAReportAtAnotherKey(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := rep("d1", "b1", drill.ResultFailed, drill.PhaseRestore, "", time.Unix(0, 0).UTC())
	r.FormatVersion = drill.FormatVersion
	var buf bytes.Buffer
	require.NoError(t, r.Encode(&buf))
	require.NoError(t, b.Put(ctx, "db2/drills/d1.json", bytes.NewReader(buf.Bytes()), int64(buf.Len())))
	require.NoError(t, b.Put(ctx, "db1/drills/d2.json", bytes.NewReader(buf.Bytes()), int64(buf.Len())))
	_, err := drill.FailedBackups(ctx, b, "db2")
	assert.ErrorIs(t, err, drill.ErrBadReport)
	assert.ErrorContains(t, err, "db2/drills/d1.json")
	_, err = drill.Read(ctx, b, "db1", "d2")
	assert.ErrorIs(t, err, drill.ErrBadReport)
	assert.ErrorContains(t, err, "holds the report of drill d1 of instance db1")
	require.NoError(t, b.Put(ctx, "db1/drills/d1.json", bytes.NewReader(buf.Bytes()), int64(buf.Len())))
	got, err := drill.Read(ctx, b, "db1", "d1")
	require.NoError(t, err, "at its own key")
	assert.Equal(t, "b1", got.BackupID)
}

// A drills dir that is a symbolic link (any local user may create one in
// the default scratch root, the system's temp dir) is never followed: not
// by the agent's start-up sweep, nor by a drill's prepare or teardown,
// which would remove what it points to.
func TestScratchRefusesASymlinkedDrillsDir(t *testing.T) {
	ctx := context.Background()
	root, victim := t.TempDir(), t.TempDir()
	precious := filepath.Join(victim, "db1", "d1", "ibdata1")
	require.NoError(t, os.MkdirAll(filepath.Dir(precious), 0o700))
	require.NoError(t, os.WriteFile(precious, []byte("x"), 0o600))
	require.NoError(t, os.Symlink(victim, filepath.Join(root, "drills")))

	_, err := drill.Sweep(ctx, root)
	assert.ErrorIs(t, err, drill.ErrUnsafeScratch)
	s, err := drill.ScratchFor(root, "db1", "d1")
	require.NoError(t, err)
	assert.ErrorIs(t, s.Prepare(ctx), drill.ErrUnsafeScratch)
	assert.ErrorIs(t, s.Teardown(ctx), drill.ErrUnsafeScratch)
	_, err = os.Stat(precious)
	assert.NoError(t, err, "what the link points to is untouched")

	// A link one level down, at the instance's dir.
	root2 := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root2, "drills"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(victim, "db1"), filepath.Join(root2, "drills", "db1")))
	s2, err := drill.ScratchFor(root2, "db1", "d1")
	require.NoError(t, err)
	assert.ErrorIs(t, s2.Teardown(ctx), drill.ErrUnsafeScratch)
	_, err = drill.Sweep(ctx, root2)
	require.NoError(t, err, "a link inside is not followed by the sweep")
	_, err = os.Stat(precious)
	assert.NoError(t, err)
}

// A passed report dated in the future does not keep a backup unmarked when
// a real drill of it fails.
func TestAReportFromTheFutureJudgesNothing(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	future := rep("zz", "b1", drill.ResultPassed, "", "", time.Now().Add(24*365*time.Hour))
	future.FormatVersion = drill.FormatVersion
	require.NoError(t, drill.Write(ctx, b, future))
	require.NoError(t, drill.Write(ctx, b, rep("d1", "b1", drill.ResultFailed, drill.PhaseRestore, "", time.Now())))
	f, err := drill.FailedBackups(ctx, b, "db1")
	require.NoError(t, err)
	require.Contains(t, f, "b1")
	assert.Equal(t, "d1", f["b1"].DrillID)
	// Within the slack of clocks, a report counts.
	require.NoError(t, drill.Write(ctx, b, rep("d2", "b1", drill.ResultPassed, "", "", time.Now().Add(time.Minute))))
	f, err = drill.FailedBackups(ctx, b, "db1")
	require.NoError(t, err)
	assert.NotContains(t, f, "b1")
}
