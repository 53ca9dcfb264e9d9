package tests

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/workflows"
)

// drillStack is a stack whose agent keeps its scratch area (and so its
// drills' scratch servers) under the returned directory; heartbeat adds
// instances[0].heartbeat.
func drillStack(t *testing.T, heartbeat bool) (*stack, string) {
	scratch := filepath.Join(t.TempDir(), "scratch")
	require.NoError(t, os.MkdirAll(scratch, 0o700))
	opts := []stackOption{withTableSums(), stackOptionFunc(func(c *stackSetup) { c.config += "agent:\n  scratch_dir: " + scratch + "\n" })}
	if heartbeat {
		opts = append(opts, stackOptionFunc(func(c *stackSetup) { c.db1 += "    heartbeat:\n      table: strata.heartbeat\n" }))
	}
	return newStack(t, opts...), scratch
}

// drill runs DrillWorkflow and returns its result and error.
func (s *stack) drill(req workflows.DrillRequest) (workflows.DrillResult, error) {
	s.t.Helper()
	var res workflows.DrillResult
	_, err := s.run(workflows.DrillWorkflowID(req.Instance, req.DrillID), workflows.DrillWorkflowName, req, &res)
	return res, err
}

// report reads a drill's report from the repository.
func (s *stack) report(id string) *drill.Report {
	s.t.Helper()
	r, err := drill.Read(s.ctx, s.repo.Backend(), "db1", id)
	require.NoError(s.t, err)
	return r
}

// requireTornDown checks that the drill's scratch dir is gone and that no
// server serves its datadir.
func requireTornDown(t *testing.T, scratch, id string) {
	t.Helper()
	// The drills of these tests are of instance db1.
	sc, err := drill.ScratchFor(scratch, "db1", id)
	require.NoError(t, err)
	dir := sc.Dir
	_, err = os.Stat(dir)
	require.True(t, errors.Is(err, os.ErrNotExist), "scratch dir %s is removed (%v)", dir, err)
	_, running := server.Running(filepath.Join(dir, "data"))
	require.False(t, running, "no server serves the scratch datadir of drill %s", id)
	// Whatever the layout, nothing but (empty) instance dirs is left under
	// the drills dir: the drills of these tests run one at a time.
	root := filepath.Join(scratch, drill.ScratchDirName)
	require.NoError(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		require.True(t, rel == "." || (d.IsDir() && !strings.Contains(rel, string(filepath.Separator))), "left in the scratch area: %s", p)
		return nil
	}))
}

func phaseNames(r *drill.Report) []string {
	var out []string
	for _, p := range r.Phases {
		out = append(out, p.Phase)
	}
	return out
}

func TestDrillPassesThenACorruptChunkFailsAndMarksTheBackup(t *testing.T) {
	s, scratch := drillStack(t, true)
	s.seeded(2 << 20)
	// The agent's heartbeat writer has written a row before the backup.
	hdb, err := s.src.DB("")
	require.NoError(t, err)
	defer hdb.Close()
	require.Eventually(t, func() bool {
		var n int
		return hdb.QueryRow("SELECT COUNT(*) FROM strata.heartbeat").Scan(&n) == nil && n > 0
	}, 30*time.Second, 100*time.Millisecond, "the heartbeat table is written")
	s.backup("b1", "full")

	// (1) A good backup: a passing drill, through the CLI.
	out, err := s.cli("drill", "db1", "--id", "d1", "--wait")
	require.NoError(t, err, out)
	t.Log(out)
	assert.Contains(t, out, "PASSED")
	assert.Contains(t, out, "RTO")
	assert.Contains(t, out, "RPO")
	r := s.report("d1")
	require.True(t, r.Passed(), "%+v", r)
	assert.Equal(t, "b1", r.BackupID)
	assert.Equal(t, []string{drill.PhaseRestore, drill.PhaseStart, drill.PhaseVerify, drill.PhaseTeardown}, phaseNames(r))
	assert.Positive(t, r.RTOSeconds)
	var sum float64
	for _, p := range r.Phases[:3] {
		sum += p.Seconds
	}
	assert.LessOrEqual(t, sum, r.RTOSeconds+0.001, "the phases up to verify fit in the RTO")
	assert.True(t, r.RPOExact, "RPO from the heartbeat table")
	assert.GreaterOrEqual(t, r.RPOSeconds, 0.0)
	assert.Less(t, r.RPOSeconds, 5.0, "the heartbeat is written every second")
	assert.Positive(t, r.TablesChecked)
	assert.Positive(t, r.TablesCompared, "the backup's table sums are compared")
	assert.NotEmpty(t, r.WantGTIDSet)
	assert.Equal(t, r.WantGTIDSet, r.GotGTIDSet)
	assert.True(t, r.TornDown)
	assert.Empty(t, r.Problems)
	requireTornDown(t, scratch, "d1")

	// (2) A corrupted chunk: the drill fails naming it.
	s.backup("b2", "full")
	m, err := s.repo.ReadManifest(s.ctx, "db1", "b2")
	require.NoError(t, err)
	chunk := m.Chunks[len(m.Chunks)/2]
	key := "db1/backups/b2/" + chunk.Key
	path := filepath.Join(s.cfg.Storage.Local.Root, filepath.FromSlash(key))
	st, err := os.Stat(path)
	require.NoError(t, err, "chunk object %s", path)
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("x", int(st.Size()))), 0o600))

	_, err = s.drill(workflows.DrillRequest{Instance: "db1", DrillID: "d2"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, activities.ErrDrillFailed, ae.Type())
	assert.Contains(t, ae.Error(), key, "the error names the chunk")
	assert.Contains(t, ae.Error(), "phase restore")
	r2 := s.report("d2")
	assert.Equal(t, drill.ResultFailed, r2.Result)
	assert.Equal(t, "b2", r2.BackupID)
	assert.Equal(t, drill.PhaseRestore, r2.FailedPhase)
	assert.Equal(t, key, r2.CorruptChunk)
	assert.Equal(t, activities.ErrCorruptBackup, r2.ErrorType)
	assert.Contains(t, r2.Error, chunk.Key)
	assert.Zero(t, r2.RTOSeconds)
	assert.True(t, r2.TornDown)
	requireTornDown(t, scratch, "d2")

	// The backup is marked: `strata ls` shows it.
	out, err = s.cli("ls", "db1", "--json")
	require.NoError(t, err, out)
	var ls struct {
		Backups []activities.BackupSummary `json:"backups"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &ls), out)
	marks := map[string]string{}
	for _, b := range ls.Backups {
		marks[b.BackupID] = b.FailedDrill
	}
	assert.Equal(t, map[string]string{"b1": "", "b2": "d2"}, marks)

	// An explicit restore of it needs the override.
	var rr workflows.RestoreResult
	_, err = s.run("restore/h1:"+t.TempDir(), workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "b2",
		TargetDir: filepath.Join(t.TempDir(), "r")}, &rr)
	requireAppError(t, err, activities.ErrFailedDrill, "d2")

	// The next incremental is not based on it.
	inc := s.backup("b3", "incremental")
	assert.Equal(t, "b1", inc.ParentID)
	assert.Contains(t, inc.Note, "b2")

	// The next drill of the newest backup skips it (and b3, whose chain
	// is b1 <- b3, is drilled).
	res, err := s.drill(workflows.DrillRequest{Instance: "db1", DrillID: "d3"})
	require.NoError(t, err)
	assert.Equal(t, "b3", res.Report.BackupID)
	assert.Equal(t, []string{"b1", "b3"}, res.Report.Chain)
	requireTornDown(t, scratch, "d3")

	// History, newest first, and the status line.
	out, err = s.cli("drill", "ls", "db1", "--json")
	require.NoError(t, err, out)
	var h []drill.Report
	require.NoError(t, json.Unmarshal([]byte(out), &h), out)
	require.Len(t, h, 3)
	assert.Equal(t, []string{"d3", "d2", "d1"}, []string{h[0].DrillID, h[1].DrillID, h[2].DrillID})
	out, err = s.cli("status", "db1")
	require.NoError(t, err, out)
	assert.Contains(t, out, "last drill")
	assert.Contains(t, out, "passed d3 of b3")
}

func TestDrillPointInTimeHitsItsGTIDTarget(t *testing.T) {
	s, scratch := drillStack(t, false)
	db := s.numbered()
	arch := s.startArchive("db1", 30*time.Second)
	insertRows(t, db, 1, 50)
	base := s.backup("base", "full")
	insertRows(t, db, 51, 120)
	gtid120 := gtidPos(t, db)
	insertRows(t, db, 121, 150)
	s.waitArchived("db1", gtidPos(t, db))

	res, err := s.drill(workflows.DrillRequest{Instance: "db1", DrillID: "p1", Target: binlog.Target{GTID: gtid120}})
	require.NoError(t, err)
	r := res.Report
	require.True(t, r.Passed(), "%+v", r)
	assert.Equal(t, "base", r.BackupID)
	assert.Equal(t, "GTID "+gtid120, r.Target)
	want, err := drill.MergeGTID(base.GTIDSet, gtid120)
	require.NoError(t, err)
	assert.Equal(t, want, r.WantGTIDSet)
	assert.Equal(t, want, r.GotGTIDSet, "the executed GTID set is the target's")
	assert.Equal(t, int64(120), r.Rows, "the rows at the target")
	assert.Equal(t, []string{drill.PhaseRestore, drill.PhaseReplay, drill.PhaseStart, drill.PhaseVerify, drill.PhaseTeardown}, phaseNames(&r))
	assert.False(t, r.RPOExact)
	assert.Positive(t, r.RTOSeconds)
	requireTornDown(t, scratch, "p1")

	// Without a target, a drill replays to the newest archived transaction
	// (the archive reaches past the backup): all 150 rows, the source's
	// GTID set; --backup-only drills the backup alone (50 rows).
	latest, err := s.drill(workflows.DrillRequest{Instance: "db1", DrillID: "p2"})
	require.NoError(t, err)
	lr := latest.Report
	require.True(t, lr.Passed(), "%+v", lr)
	assert.True(t, strings.HasPrefix(lr.Target, "position "), "a point-in-time drill to a position: %q (notes %v)", lr.Target, latest.Notes)
	assert.Equal(t, int64(150), lr.Rows, "the rows of the newest archived transaction")
	assert.Equal(t, gtidPos(t, db), lr.GotGTIDSet)
	assert.Contains(t, phaseNames(&lr), drill.PhaseReplay)
	requireTornDown(t, scratch, "p2")
	only, err := s.drill(workflows.DrillRequest{Instance: "db1", DrillID: "p3", BackupOnly: true})
	require.NoError(t, err)
	assert.Empty(t, only.Report.Target)
	assert.Equal(t, int64(50), only.Report.Rows)
	assert.NotContains(t, phaseNames(&only.Report), drill.PhaseReplay)
	requireTornDown(t, scratch, "p3")

	// Once base is marked by a failed drill, point-in-time plans skip it
	// (saying so), and naming it needs the override.
	require.NoError(t, drill.Write(s.ctx, s.repo.Backend(), &drill.Report{DrillID: "p0", Instance: "db1", BackupID: "base",
		Result: drill.ResultFailed, FailedPhase: drill.PhaseRestore, ErrorType: activities.ErrCorruptBackup, Started: time.Now()}))
	_, _, err = s.pitr(binlog.Target{GTID: gtid120}, "")
	requireAppError(t, err, "OutsideRecoveryWindow", "skipped: backup base failed drill p0")
	_, _, err = s.pitr(binlog.Target{GTID: gtid120}, "base")
	requireAppError(t, err, activities.ErrFailedDrill, "--allow-failed-drill")
	s.stopArchive(arch)
}

func TestDrillCancelledMidwayTearsDown(t *testing.T) {
	s, scratch := drillStack(t, false)
	s.seeded(64 << 20)
	s.backup("b1", "full")
	id := workflows.DrillWorkflowID("db1", "c1")
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: id, TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.DrillWorkflowName, workflows.DrillRequest{Instance: "db1", DrillID: "c1"})
	require.NoError(t, err)
	dir := filepath.Join(scratch, drill.ScratchDirName, "db1", "c1")
	require.Eventually(t, func() bool { _, err := os.Stat(dir); return err == nil }, time.Minute, 10*time.Millisecond, "the drill creates its scratch dir")
	require.NoError(t, s.client.CancelWorkflow(s.ctx, id, ""))
	err = run.Get(s.ctx, nil)
	var ce *temporal.CanceledError
	require.True(t, errors.As(err, &ce), "the drill ends cancelled: %v", err)
	r := s.report("c1")
	assert.Equal(t, drill.ResultFailed, r.Result)
	assert.True(t, strings.HasPrefix(r.Error, "cancelled during "), r.Error)
	assert.True(t, r.TornDown)
	assert.False(t, r.MarksBackup(), "a cancel says nothing about the backup")
	assert.Equal(t, drill.PhaseTeardown, r.Phases[len(r.Phases)-1].Phase)
	requireTornDown(t, scratch, "c1")
	// Nothing is left beside it either (the restore's staging dir).
	ents, err := os.ReadDir(filepath.Join(scratch, drill.ScratchDirName))
	require.NoError(t, err)
	assert.Empty(t, ents)
}
