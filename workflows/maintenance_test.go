package workflows

import (
	"context"

	"github.com/stretchr/testify/mock"
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
