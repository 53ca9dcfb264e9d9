package activities

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
)

// A backup whose drill failed is never chosen silently: not as the base of
// the next incremental, not by a drill of the newest backup, and not by an
// explicit restore without the override.
func TestFailedDrillMarksTheBackup(t *testing.T) {
	ctx := context.Background()
	c := testCatalog(t, 0,
		bk("f1", "full", "", 0, 100, 0),
		bk("i1", "incremental", "f1", 100, 150, 6),
		bk("f2", "full", "", 0, 200, 12),
	)
	plan := func() *DrillPlan {
		p, err := c.PlanDrill(ctx, DrillPlanRequest{Instance: "db1"})
		require.NoError(t, err)
		return p
	}
	assert.Equal(t, "f2", plan().Backup.BackupID, "the newest backup")
	inc, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	require.NoError(t, err)
	assert.Equal(t, "f2", inc.ParentID)

	require.NoError(t, c.WriteDrillReport(ctx, drill.Report{DrillID: "d1", Instance: "db1", BackupID: "f2", Result: drill.ResultFailed,
		FailedPhase: drill.PhaseRestore, ErrorType: ErrCorruptBackup, Started: t0}))
	p := plan()
	assert.Equal(t, "i1", p.Backup.BackupID, "the newest backup without a failed drill")
	assert.Equal(t, []string{"f1", "i1"}, p.Chain)
	assert.Contains(t, p.Notes[0], "skipped: backup f2 failed drill d1")
	inc, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	require.NoError(t, err)
	assert.Equal(t, "i1", inc.ParentID, "the next incremental is not based on f2")
	assert.Contains(t, inc.Note, "f2 failed drill d1")
	diff, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: manifest.TypeDifferential})
	require.NoError(t, err)
	assert.Equal(t, "f1", diff.ParentID)

	_, err = c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "f2"})
	assert.Equal(t, ErrFailedDrill, appErrType(err))
	assert.ErrorContains(t, err, "--allow-failed-drill")
	chain, err := c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "f2", AllowFailedDrill: true})
	require.NoError(t, err)
	assert.Len(t, chain, 1)
	explicit, err := c.PlanDrill(ctx, DrillPlanRequest{Instance: "db1", BackupID: "f2"})
	require.NoError(t, err, "a drill of it, asked for, re-drills it")
	assert.Equal(t, "f2", explicit.Backup.BackupID)

	// A failed full condemns the incrementals built on it.
	require.NoError(t, c.WriteDrillReport(ctx, drill.Report{DrillID: "d2", Instance: "db1", BackupID: "f1", Result: drill.ResultFailed,
		FailedPhase: drill.PhaseVerify, ErrorType: ErrVerificationFailed, Started: t0.Add(1)}))
	_, err = c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "i1"})
	assert.Equal(t, ErrFailedDrill, appErrType(err))
	_, err = c.PlanDrill(ctx, DrillPlanRequest{Instance: "db1"})
	assert.Equal(t, ErrBackupNotFound, appErrType(err))
	_, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	assert.Equal(t, ErrNoBase, appErrType(err))

	// A later passing drill clears the mark.
	require.NoError(t, c.WriteDrillReport(ctx, drill.Report{DrillID: "d3", Instance: "db1", BackupID: "f2", Result: drill.ResultPassed, Started: t0.Add(2)}))
	assert.Equal(t, "f2", plan().Backup.BackupID)
}

// A drill id used before for the instance is refused before the drill
// runs, and a second report never replaces the first drill's (whose
// verdict marks or clears backups).
func TestDrillIDOfAnEarlierDrillIsRefused(t *testing.T) {
	ctx := context.Background()
	c := testCatalog(t, 0, bk("f1", "full", "", 0, 100, 0))
	first := drill.Report{DrillID: "d1", Instance: "db1", BackupID: "f1", Result: drill.ResultFailed,
		FailedPhase: drill.PhaseRestore, ErrorType: ErrCorruptBackup, Started: t0, WorkflowID: "drill/db1/d1", RunID: "r1"}
	require.NoError(t, c.WriteDrillReport(ctx, first))
	require.NoError(t, c.WriteDrillReport(ctx, first), "a retried write of the same run")
	_, err := c.PlanDrill(ctx, DrillPlanRequest{Instance: "db1", DrillID: "d1", BackupID: "f1"})
	assert.Equal(t, ErrDrillIDTaken, appErrType(err))
	assert.ErrorContains(t, err, "another id")
	_, err = c.PlanDrill(ctx, DrillPlanRequest{Instance: "db1", DrillID: "d2", BackupID: "f1"})
	require.NoError(t, err)

	second := first
	second.RunID, second.Result, second.FailedPhase, second.ErrorType = "r2", drill.ResultPassed, "", ""
	err = c.WriteDrillReport(ctx, second)
	assert.Equal(t, ErrDrillIDTaken, appErrType(err))
	_, err = c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "f1"})
	assert.Equal(t, ErrFailedDrill, appErrType(err), "the first drill's verdict stands")
}

// An object at a report's key that is not a report stops the plans that
// read the drill history with a typed, non-retryable error naming it, not
// a retried one.
func TestUnreadableDrillReportIsATypedError(t *testing.T) {
	ctx := context.Background()
	c := testCatalog(t, 0, bk("f1", "full", "", 0, 100, 0))
	require.NoError(t, c.Repo.Backend().Put(ctx, "db1/drills/x.json", strings.NewReader(`{"format_version":99}`), 21))
	_, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	assert.Equal(t, ErrBadDrillReport, appErrType(err))
	assert.ErrorContains(t, err, "db1/drills/x.json")
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	assert.True(t, ae.NonRetryable())
	_, err = c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "f1"})
	assert.Equal(t, ErrBadDrillReport, appErrType(err))
	_, err = c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "f1", AllowFailedDrill: true})
	assert.NoError(t, err, "the override the message names works")
}
