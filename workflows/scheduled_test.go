package workflows

import (
	"context"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/verify"
)

func (s *wfSuite) registerScheduledBackup(f func(context.Context, ScheduledBackupAsk) (*ScheduledResult, error)) {
	s.env.RegisterActivityWithOptions(f, activity.RegisterOptions{Name: RequestScheduledBackupActivity})
}

// A scheduled incremental asks the entity for an incremental (auto full)
// with a backup id fixed by the run and the schedule as requester.
func (s *wfSuite) TestScheduledIncrementalGoesThroughTheEntity() {
	var got ScheduledBackupAsk
	s.registerScheduledBackup(func(_ context.Context, a ScheduledBackupAsk) (*ScheduledResult, error) {
		got = a
		return &ScheduledResult{WorkflowID: BackupWorkflowID(a.Instance, a.Ask.BackupID), BackupID: a.Ask.BackupID,
			Backup: &BackupResult{BackupSummary: activities.BackupSummary{BackupID: a.Ask.BackupID, Type: "full"}}}, nil
	})
	s.env.ExecuteWorkflow(ScheduledWorkflow, ScheduledRequest{Instance: "db1", Kind: "incremental"})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(ScheduledBackupAsk{Instance: "db1", Ask: BackupAsk{Type: "incremental", AutoFull: true, BackupID: "20261124T084500Z",
		RequestedBy: "schedule/incremental", Reason: "Temporal Schedule strata/db1/incremental"}}, got)
	var res ScheduledResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("backup/db1/20261124T084500Z", res.WorkflowID)
	s.Equal("full", res.Backup.Type)
}

func (s *wfSuite) TestScheduledBackupFailsWithTheBackupsError() {
	s.registerScheduledBackup(func(context.Context, ScheduledBackupAsk) (*ScheduledResult, error) {
		return nil, temporal.NewNonRetryableApplicationError("instance db1 refused", activities.ErrInvalidRequest, nil)
	})
	s.env.ExecuteWorkflow(ScheduledWorkflow, ScheduledRequest{Instance: "db1", Kind: "full"})
	s.Require().ErrorContains(s.env.GetWorkflowError(), "instance db1 refused")
}

func (s *wfSuite) TestScheduledVerifyStartsVerify() {
	var seen []string
	s.env.RegisterWorkflowWithOptions(func(ctx workflow.Context, r VerifyRequest) (*VerifyResult, error) {
		seen = append(seen, workflow.GetInfo(ctx).WorkflowExecution.ID)
		return &VerifyResult{OK: true, Report: verify.Report{Instance: r.Instance}}, nil
	}, workflow.RegisterOptions{Name: VerifyWorkflowName})
	s.env.RegisterWorkflowWithOptions(func(ctx workflow.Context, r RetentionRequest) (*RetentionResult, error) {
		seen = append(seen, workflow.GetInfo(ctx).WorkflowExecution.ID)
		return &RetentionResult{}, nil
	}, workflow.RegisterOptions{Name: RetentionWorkflowName})
	s.env.ExecuteWorkflow(ScheduledWorkflow, ScheduledRequest{Instance: "db1", Kind: "verify"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res ScheduledResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.True(res.Verify.OK)
	s.Equal([]string{"verify/db1/20261124T084500Z"}, seen)
}

func (s *wfSuite) TestScheduledPruneStartsRetention() {
	s.env.RegisterWorkflowWithOptions(func(ctx workflow.Context, r RetentionRequest) (*RetentionResult, error) {
		if workflow.GetInfo(ctx).WorkflowExecution.ID != "retention/db1" || r.Instance != "db1" {
			return nil, invalid("wrong child %s", workflow.GetInfo(ctx).WorkflowExecution.ID)
		}
		return &RetentionResult{Plan: activities.RetentionPlan{Policy: "keep_full=2"}}, nil
	}, workflow.RegisterOptions{Name: RetentionWorkflowName})
	s.env.ExecuteWorkflow(ScheduledWorkflow, ScheduledRequest{Instance: "db1", Kind: "prune"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res ScheduledResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("keep_full=2", res.Retention.Plan.Policy)
}

func (s *wfSuite) TestScheduledDrillStartsDrill() {
	s.env.RegisterWorkflowWithOptions(func(ctx workflow.Context, r DrillRequest) (*DrillResult, error) {
		if workflow.GetInfo(ctx).WorkflowExecution.ID != "drill/db1/20261124T084500Z" || r.Instance != "db1" || r.DrillID != "20261124T084500Z" {
			return nil, invalid("wrong child %s %+v", workflow.GetInfo(ctx).WorkflowExecution.ID, r)
		}
		return &DrillResult{Report: drill.Report{BackupID: "b7", Result: drill.ResultPassed}}, nil
	}, workflow.RegisterOptions{Name: DrillWorkflowName})
	s.env.ExecuteWorkflow(ScheduledWorkflow, ScheduledRequest{Instance: "db1", Kind: "drill"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res ScheduledResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("b7", res.BackupID)
	s.Equal("drill/db1/20261124T084500Z", res.WorkflowID)
}

func (s *wfSuite) TestScheduledUnknownKindIsInvalid() {
	s.env.ExecuteWorkflow(ScheduledWorkflow, ScheduledRequest{Instance: "db1", Kind: "snapshot"})
	var ae *temporal.ApplicationError
	s.Require().ErrorAs(s.env.GetWorkflowError(), &ae)
	s.Equal(activities.ErrInvalidRequest, ae.Type())
}

// A scheduled logical backup asks the entity for a logical backup, never
// turned into a full.
func (s *wfSuite) TestScheduledLogicalAsksForALogicalBackup() {
	var got ScheduledBackupAsk
	s.registerScheduledBackup(func(_ context.Context, a ScheduledBackupAsk) (*ScheduledResult, error) {
		got = a
		return &ScheduledResult{WorkflowID: BackupWorkflowID(a.Instance, a.Ask.BackupID), BackupID: a.Ask.BackupID,
			Backup: &BackupResult{BackupSummary: activities.BackupSummary{BackupID: a.Ask.BackupID, Type: "logical"}}}, nil
	})
	s.env.ExecuteWorkflow(ScheduledWorkflow, ScheduledRequest{Instance: "db1", Kind: "logical"})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(ScheduledBackupAsk{Instance: "db1", Ask: BackupAsk{Type: "logical", BackupID: "20261124T084500Z",
		RequestedBy: "schedule/logical", Reason: "Temporal Schedule strata/db1/logical"}}, got)
}
