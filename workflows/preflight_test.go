package workflows

import (
	"context"
	"errors"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
)

// The pre-flight check runs after the route is resolved and before the
// plan and the backup, on the agent's light queue, with its own timeout.
func (s *wfSuite) TestPreflightRunsBeforeThePlanAndTheBackup() {
	var order []string
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, mock.Anything).Return(route, nil)
	s.env.OnActivity(s.ag.Preflight, mock.Anything, activities.PreflightParams{Instance: "db1"}).Return(
		func(ctx context.Context, _ activities.PreflightParams) (*activities.PreflightResult, error) {
			info := activity.GetInfo(ctx)
			order = append(order, "preflight@"+info.TaskQueue)
			return &activities.PreflightResult{Checked: 3, Waited: 30e9}, nil
		}).Once()
	s.env.OnActivity(s.cat.PlanBackup, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.PlanRequest) (*activities.BackupPlan, error) {
			order = append(order, "plan")
			return &activities.BackupPlan{Type: r.Type, ChainLength: 1}, nil
		}).Once()
	s.env.OnActivity(s.ag.Backup, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, p activities.BackupParams) (*activities.BackupSummary, error) {
			order = append(order, "backup@"+activity.GetInfo(ctx).TaskQueue)
			return &activities.BackupSummary{Instance: p.Instance, BackupID: p.BackupID, Type: p.Type}, nil
		}).Once()
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1", BackupID: "b1"})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal([]string{"preflight@strata-agent.h1.binlog", "plan", "backup@strata-agent.h1"}, order)
	var res BackupResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Require().NotNil(res.Preflight)
	s.Equal(3, res.Preflight.Checked)
}

// A pre-flight check that stays blocked fails the workflow with its typed
// error, once, and no backup starts.
func (s *wfSuite) TestPreflightBlockedFailsWithoutABackup() {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, mock.Anything).Return(route, nil)
	calls := 0
	s.env.OnActivity(s.ag.Preflight, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.PreflightParams) (*activities.PreflightResult, error) {
			calls++
			return nil, temporal.NewNonRetryableApplicationError(
				"instance db1: pre-flight check still blocked after 10m0s (budget 10m0s, 41 checks): transaction 1234 of etl@10.0.0.9 (thread 8) open for 2h0m0s",
				activities.ErrPreflightBlocked, nil)
		})
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1", BackupID: "b1"})
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrPreflightBlocked, ae.Type())
	s.Contains(ae.Error(), "transaction 1234 of etl@10.0.0.9")
	s.Equal(1, calls, "non-retryable")
	s.env.AssertNotCalled(s.T(), "Backup", mock.Anything, mock.Anything)
	s.env.AssertNotCalled(s.T(), "PlanBackup", mock.Anything, mock.Anything)
}
