package workflows

import (
	"context"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/retention"
	"github.com/strata-backup/strata/internal/verify"
)

func (s *wfSuite) TestVerifyReportsProblemsWithoutFailing() {
	s.env.OnActivity(s.cat.VerifyBackups, mock.Anything, activities.VerifyRequest{Instance: "db1", BackupID: "i1"}).
		Return(&verify.Report{Instance: "db1", Checked: []string{"f1", "i1"},
			Problems: []verify.Problem{{BackupID: "f1", Chunk: 3, What: "sha256 mismatch"}}}, nil)
	s.env.ExecuteWorkflow(VerifyWorkflow, VerifyRequest{Instance: "db1", BackupID: "i1"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res VerifyResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.False(res.OK)
	s.Equal(3, res.Report.Problems[0].Chunk)
}

func (s *wfSuite) TestRetentionPlansAgainWhenThePlanIsStale() {
	plans := 0
	s.env.OnActivity(s.cat.PlanRetention, mock.Anything, activities.RetentionRequest{Instance: "db1"}).Return(
		func(context.Context, activities.RetentionRequest) (*activities.RetentionPlan, error) {
			plans++
			return &activities.RetentionPlan{Policy: "keep_full=1", Plan: retention.Plan{Delete: []retention.Action{{BackupID: "f1"}}}}, nil
		})
	applies := 0
	s.env.OnActivity(s.cat.ApplyRetention, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.ApplyRequest) (*activities.RetentionResult, error) {
			applies++
			if applies == 1 {
				return nil, temporal.NewNonRetryableApplicationError("stale", activities.ErrStalePlan, nil)
			}
			return &activities.RetentionResult{Deleted: r.Plan.Plan.Delete}, nil
		})
	s.env.ExecuteWorkflow(RetentionWorkflow, RetentionRequest{Instance: "db1"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res RetentionResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal(2, plans)
	s.Equal("f1", res.Result.Deleted[0].BackupID)
}

func (s *wfSuite) TestRetentionDryRunIsPassedThrough() {
	s.env.OnActivity(s.cat.PlanRetention, mock.Anything, mock.Anything).Return(&activities.RetentionPlan{}, nil)
	s.env.OnActivity(s.cat.ApplyRetention, mock.Anything, mock.MatchedBy(func(r activities.ApplyRequest) bool { return r.DryRun })).
		Return(&activities.RetentionResult{DryRun: true}, nil).Once()
	s.env.ExecuteWorkflow(RetentionWorkflow, RetentionRequest{Instance: "db1", DryRun: true})
	s.Require().NoError(s.env.GetWorkflowError())
}

// ApplyRetention runs with the configured heartbeat timeout that the plan
// carries, so that a prune whose worker was killed is retried that soon.
func (s *wfSuite) TestRetentionApplyUsesThePlansHeartbeatTimeout() {
	s.env.OnActivity(s.cat.PlanRetention, mock.Anything, activities.RetentionRequest{Instance: "db1", AllowDeleteNewest: true}).
		Return(&activities.RetentionPlan{Policy: "keep_days=7 allow_delete_newest", HeartbeatTimeout: 10 * time.Second}, nil).Once()
	var got time.Duration
	s.env.OnActivity(s.cat.ApplyRetention, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, r activities.ApplyRequest) (*activities.RetentionResult, error) {
			got = activity.GetInfo(ctx).HeartbeatTimeout
			return &activities.RetentionResult{Archive: &retention.ArchiveSummary{Segments: 3, KeepFrom: 4}}, nil
		}).Once()
	s.env.ExecuteWorkflow(RetentionWorkflow, RetentionRequest{Instance: "db1", AllowDeleteNewest: true})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(10*time.Second, got)
	var res RetentionResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal(3, res.Result.Archive.Segments)
}

func (s *wfSuite) TestRetentionApplyKeepsTheDefaultHeartbeatTimeoutForOldPlans() {
	s.env.OnActivity(s.cat.PlanRetention, mock.Anything, mock.Anything).Return(&activities.RetentionPlan{}, nil).Once()
	var got time.Duration
	s.env.OnActivity(s.cat.ApplyRetention, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, r activities.ApplyRequest) (*activities.RetentionResult, error) {
			got = activity.GetInfo(ctx).HeartbeatTimeout
			return &activities.RetentionResult{}, nil
		}).Once()
	s.env.ExecuteWorkflow(RetentionWorkflow, RetentionRequest{Instance: "db1"})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(2*time.Minute, got)
}
