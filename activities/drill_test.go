package activities

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
