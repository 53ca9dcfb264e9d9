package workflows

import (
	"context"
	"errors"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
)

func (s *wfSuite) coverage() {
	s.env.OnActivity(s.cat.ArchiveWindows, mock.Anything, activities.InstanceRequest{Instance: "db1"}).Return(
		&activities.ArchiveCoverage{Windows: []binlog.Window{{FromBackup: "f1", ToGTID: "0-1-7"}},
			Gaps: []binlog.Gap{{Reason: "binlog file binlog.000003 was purged from the server before it was archived"}}}, nil).Maybe()
}

func (s *wfSuite) TestArchiveRunsUntilStopped() {
	s.resolve()
	s.coverage()
	runs := 0
	s.env.OnActivity(s.ag.ArchiveBinlogs, mock.Anything, activities.ArchiveParams{Instance: "db1", RunFor: time.Minute}).Return(
		func(context.Context, activities.ArchiveParams) (*binlog.Status, error) {
			runs++
			return &binlog.Status{File: "binlog.000001", Pos: uint32(1000 * runs), LastGTID: "0-1-7"}, nil
		}).After(time.Minute)
	s.env.RegisterDelayedCallback(func() {
		v, err := s.env.QueryWorkflow(ArchiveStatusQuery)
		s.Require().NoError(err)
		var st ArchiveState
		s.Require().NoError(v.Get(&st))
		s.Equal("h1", st.Host)
		s.Greater(st.Runs, 0)
		s.Equal("f1", st.Windows[0].FromBackup, "the status query answers the recovery window")
		s.Contains(st.Gaps[0].Reason, "purged", "and the gaps")
		s.env.SignalWorkflow(ArchiveStopSignal, nil)
	}, 3*time.Minute+30*time.Second)
	s.env.ExecuteWorkflow(BinlogArchiveWorkflow, ArchiveRequest{Instance: "db1", RunFor: time.Minute})
	s.Require().NoError(s.env.GetWorkflowError())
	var st ArchiveState
	s.Require().NoError(s.env.GetWorkflowResult(&st))
	s.True(st.Stopping)
	s.Equal("0-1-7", st.Last.LastGTID)
	s.GreaterOrEqual(runs, 3)
}

func (s *wfSuite) TestArchiveKeepsGoingAfterErrorsAndShowsThem() {
	s.resolve()
	s.coverage()
	calls := 0
	s.env.OnActivity(s.ag.ArchiveBinlogs, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.ArchiveParams) (*binlog.Status, error) {
			calls++
			if calls == 1 {
				return nil, temporal.NewNonRetryableApplicationError("access denied", activities.ErrAuthFailed, nil)
			}
			return &binlog.Status{LastGTID: "0-1-9"}, nil
		}).After(time.Minute)
	s.env.RegisterDelayedCallback(func() {
		v, err := s.env.QueryWorkflow(ArchiveStatusQuery)
		s.Require().NoError(err)
		var st ArchiveState
		s.Require().NoError(v.Get(&st))
		s.Contains(st.LastError, "access denied")
	}, 70*time.Second)
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(ArchiveStopSignal, nil) }, 5*time.Minute)
	s.env.ExecuteWorkflow(BinlogArchiveWorkflow, ArchiveRequest{Instance: "db1", RunFor: time.Minute})
	s.Require().NoError(s.env.GetWorkflowError())
	var st ArchiveState
	s.Require().NoError(s.env.GetWorkflowResult(&st))
	s.Empty(st.LastError, "a later run cleared the error")
	s.Greater(calls, 1)
}

func (s *wfSuite) TestArchiveContinuesAsNew() {
	s.resolve()
	s.coverage()
	s.env.OnActivity(s.ag.ArchiveBinlogs, mock.Anything, mock.Anything).Return(&binlog.Status{LastGTID: "0-1-1"}, nil)
	s.env.ExecuteWorkflow(BinlogArchiveWorkflow, ArchiveRequest{Instance: "db1", RunFor: time.Minute})
	err := s.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	s.Require().True(errors.As(err, &can), "%v", err)
}

func (s *wfSuite) TestPointInTimeRestoreReplaysThenStarts() {
	s.resolve()
	target := binlog.Target{GTID: "0-1-200"}
	s.env.OnActivity(s.cat.PlanPITR, mock.Anything, activities.PITRRequest{Instance: "db1", Target: target}).
		Return(&activities.PITRPlan{BackupID: "f1", StartFile: "binlog.000001", StartPos: 4711}, nil)
	s.chain("f1")
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(&activities.RestoreStats{}, nil)
	replayed := false
	s.env.OnActivity(s.ag.ReplayBinlogs, mock.Anything, activities.ReplayParams{Instance: "db1", StartFile: "binlog.000001", StartPos: 4711,
		Target: target, TargetDir: "/r"}).Return(func(context.Context, activities.ReplayParams) (*activities.ReplayResult, error) {
		replayed = true
		return &activities.ReplayResult{Transactions: 42, Method: "replica"}, nil
	}).Once()
	s.env.OnActivity(s.ag.StartServer, mock.Anything, activities.StartServerParams{Instance: "db1", TargetDir: "/r", Port: 3307}).Return(
		func(context.Context, activities.StartServerParams) (*activities.StartServerResult, error) {
			s.True(replayed, "the server starts after the replay")
			return &activities.StartServerResult{PID: 9}, nil
		}).Once()
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", TargetDir: "/r", Target: target, Start: true, Port: 3307})
	s.Require().NoError(s.env.GetWorkflowError())
	var res RestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("f1", res.BackupID)
	s.Equal(42, res.Replay.Transactions)
	s.Equal(9, res.Server.PID)
}

func (s *wfSuite) TestPointInTimeRestoreOutsideWindow() {
	s.resolve()
	s.env.OnActivity(s.cat.PlanPITR, mock.Anything, mock.Anything).
		Return(nil, temporal.NewNonRetryableApplicationError("no backup can reach time ...; recovery windows: ...", activities.ErrOutsideWindow, nil))
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", TargetDir: "/r", Target: binlog.Target{Time: time.Now()}})
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &ae))
	s.Equal(activities.ErrOutsideWindow, ae.Type())
}

func (s *wfSuite) TestInterruptedReplayRestoresAgain() {
	s.resolve()
	target := binlog.Target{GTID: "0-1-9"}
	s.env.OnActivity(s.cat.PlanPITR, mock.Anything, mock.Anything).Return(&activities.PITRPlan{BackupID: "f1", StartFile: "binlog.000001", StartPos: 4}, nil)
	s.chain("f1")
	restores, replays := 0, 0
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RestoreParams) (*activities.RestoreStats, error) {
			restores++
			return &activities.RestoreStats{}, nil
		})
	s.env.OnActivity(s.ag.ReplayBinlogs, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.ReplayParams) (*activities.ReplayResult, error) {
			replays++
			if replays == 1 {
				return nil, temporal.NewNonRetryableApplicationError("interrupted", activities.ErrReplayInterrupted, nil)
			}
			return &activities.ReplayResult{Transactions: 9}, nil
		})
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", TargetDir: "/r", Target: target})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(2, restores)
	s.Equal(2, replays)
}
