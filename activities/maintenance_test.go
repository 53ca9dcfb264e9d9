package activities

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/manifest"
)

// Retention through the activities: a keep_days policy whose backups all
// expired keeps the newest one, and the binlog archive is pruned up to its
// recovery window, in a dry run only on paper.
func TestRetentionKeepsNewestAndPrunesTheArchive(t *testing.T) {
	ctx := context.Background()
	f1 := bk("f1", manifest.TypeFull, "", 0, 100, 0)
	f1.BinlogFile, f1.BinlogPos = "bin.000001", 50
	f2 := bk("f2", manifest.TypeFull, "", 0, 200, 24)
	f2.BinlogFile, f2.BinlogPos = "bin.000003", 50
	c := testCatalog(t, 0, f1, f2)
	c.Config.Instances[0].Retention.KeepDays = 7 // both ended weeks ago
	st := &binlog.Store{B: c.Repo.Backend(), Instance: "db1"}
	for i, s := range []binlog.Segment{
		{File: "bin.000001", Start: 4, End: 100}, {File: "bin.000001", Start: 100, End: 200},
		{File: "bin.000002", Start: 4, End: 100}, {File: "bin.000003", Start: 4, End: 100},
	} {
		s.Seq = uint64(i + 1)
		require.NoError(t, st.WriteSegment(ctx, &s, make([]byte, s.End-s.Start)))
	}

	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	env.RegisterActivity(c)
	plan := func(req RetentionRequest) *RetentionPlan {
		v, err := env.ExecuteActivity(c.PlanRetention, req)
		require.NoError(t, err)
		var p RetentionPlan
		require.NoError(t, v.Get(&p))
		return &p
	}
	apply := func(p *RetentionPlan, dry bool) *RetentionResult {
		v, err := env.ExecuteActivity(c.ApplyRetention, ApplyRequest{Instance: "db1", Plan: *p, DryRun: dry})
		require.NoError(t, err)
		var r RetentionResult
		require.NoError(t, v.Get(&r))
		return &r
	}

	p := plan(RetentionRequest{Instance: "db1"})
	require.Len(t, p.Plan.Keep, 1)
	assert.Equal(t, "f2", p.Plan.Keep[0].BackupID)
	assert.Contains(t, p.Plan.Keep[0].Reason, "newest restorable chain")
	assert.Equal(t, c.Config.Temporal.HeartbeatTimeout.Std(), p.HeartbeatTimeout)

	dry := apply(p, true)
	require.NotNil(t, dry.Archive)
	assert.Equal(t, 3, dry.Archive.Segments)
	assert.Equal(t, uint64(4), dry.Archive.KeepFrom)
	assert.Equal(t, "f2", dry.Archive.KeepFor)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Len(t, ix.Segments, 4, "a dry run deletes nothing")

	done := apply(p, false)
	assert.Equal(t, []string{"f1"}, []string{done.Deleted[0].BackupID})
	assert.Equal(t, dry.Archive, done.Archive)
	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 1)
	assert.Equal(t, uint64(4), ix.Segments[0].Seq)
	data, err := st.ListData(ctx)
	require.NoError(t, err)
	assert.Len(t, data, 1)

	// Deleting the newest chain takes the flag, and then nothing anchors
	// the archive: it is kept whole.
	p = plan(RetentionRequest{Instance: "db1", AllowDeleteNewest: true})
	assert.Empty(t, p.Plan.Keep)
	assert.True(t, p.Plan.NewestDeleted)
	done = apply(p, false)
	assert.Len(t, done.Deleted, 1)
	assert.True(t, done.Archive.Empty())
	assert.Contains(t, done.Archive.Reason, "no backup is retained")
	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Len(t, ix.Segments, 1)
}
