package workflows

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/flavor"
)

var drillScratch = &drill.Scratch{Dir: "/scratch/drills/d1", Datadir: "/scratch/drills/d1/data"}

// drillMocks mocks a drill of backup b2 (chain b1, b2) on host h1 and
// returns the reports written.
func (s *wfSuite) drillMocks(plan *activities.DrillPlan) *[]drill.Report {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, activities.InstanceRequest{Instance: "db1"}).Return(route, nil)
	s.env.OnActivity(s.cat.PlanDrill, mock.Anything, mock.Anything).Return(plan, nil)
	s.env.OnActivity(s.ag.PrepareDrill, mock.Anything, activities.PrepareDrillParams{Instance: "db1", DrillID: "d1"}).Return(drillScratch, nil).Once()
	var reports []drill.Report
	s.env.OnActivity(s.cat.WriteDrillReport, mock.Anything, mock.Anything).Return(func(_ context.Context, r drill.Report) error {
		reports = append(reports, r)
		return nil
	})
	return &reports
}

func drillPlan() *activities.DrillPlan {
	return &activities.DrillPlan{
		Backup: activities.BackupSummary{Instance: "db1", BackupID: "b2", ServerFlavor: flavor.MariaDB, Tool: "mariabackup", GTIDSet: "0-1-20", ConsistentAt: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)},
		Chain:  []string{"b1", "b2"}, Host: "h1", CompareSums: true,
	}
}

func (s *wfSuite) teardownOnce() {
	s.env.OnActivity(s.ag.TeardownDrill, mock.Anything, activities.PrepareDrillParams{Instance: "db1", DrillID: "d1"}).Return(nil).Once()
}

func (s *wfSuite) restoreOK() {
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, activities.RestoreParams{Instance: "db1", BackupID: "b2", Chain: []string{"b1", "b2"},
		TargetDir: drillScratch.Datadir, MaxAttempts: int(retry.MaximumAttempts)}).Return(&activities.RestoreStats{}, nil).Once()
	s.env.OnActivity(s.ag.StartServer, mock.Anything, activities.StartServerParams{Instance: "db1", TargetDir: drillScratch.Datadir, PickPort: true}).
		Return(&activities.StartServerResult{Port: 41234, PID: 99}, nil).Once()
}

func (s *wfSuite) TestDrillPasses() {
	reports := s.drillMocks(drillPlan())
	s.restoreOK()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, activities.DrillVerifyParams{Instance: "db1", BackupID: "b2", Datadir: drillScratch.Datadir,
		Port: 41234, CompareSums: true}).Return(&activities.DrillVerifyResult{TablesChecked: 3, TablesCompared: 2, Rows: 50, GotGTIDSet: "0-1-20"}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res DrillResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	r := res.Report
	s.Equal(drill.ResultPassed, r.Result)
	s.Equal("db1/drills/d1.json", res.ReportKey)
	s.Equal([]string{"b1", "b2"}, r.Chain)
	s.Equal(41234, r.Port)
	s.True(r.TornDown)
	s.Equal("0-1-20", r.WantGTIDSet)
	s.Equal(2, r.TablesCompared)
	var phases []string
	for _, p := range r.Phases {
		phases = append(phases, p.Phase)
	}
	s.Equal([]string{drill.PhaseRestore, drill.PhaseStart, drill.PhaseVerify, drill.PhaseTeardown}, phases)
	s.Require().Len(*reports, 1)
	s.Equal(drill.ResultPassed, (*reports)[0].Result)
	s.False(r.RPOExact)
}

func (s *wfSuite) TestDrillVerificationFailureFailsLoudlyAfterReportAndTeardown() {
	reports := s.drillMocks(drillPlan())
	s.restoreOK()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{TablesChecked: 3, TablesCompared: 2,
		GotGTIDSet: "0-1-19", Problems: []string{"table app.t has 9 rows, the backup recorded 10"}}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrDrillFailed, ae.Type())
	s.Contains(ae.Error(), "in phase verify")
	s.Require().Len(*reports, 1)
	r := (*reports)[0]
	s.Equal(drill.ResultFailed, r.Result)
	s.Equal(drill.PhaseVerify, r.FailedPhase)
	s.Zero(r.RTOSeconds, "a failed drill never served")
	s.Contains(r.Problems, "table app.t has 9 rows, the backup recorded 10")
	s.Contains(r.Problems, `executed GTID set is "0-1-19", want "0-1-20"`)
	s.True(r.TornDown)
	s.True(r.MarksBackup())
}

func (s *wfSuite) TestDrillRestoreFailureNamesTheChunk() {
	reports := s.drillMocks(drillPlan())
	key := "db1/backups/b2/chunks/000003"
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("backup b2 of db1 is corrupt: chunk 3: sha256 mismatch", activities.ErrCorruptBackup, nil, activities.CorruptChunk{Key: key})).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrDrillFailed, ae.Type())
	s.Contains(ae.Error(), "corrupt chunk "+key)
	var det activities.DrillFailure
	s.Require().NoError(ae.Details(&det))
	s.Equal(activities.DrillFailure{DrillID: "d1", Phase: drill.PhaseRestore, Chunk: key, ReportKey: "db1/drills/d1.json"}, det)
	s.Require().Len(*reports, 1)
	r := (*reports)[0]
	s.Equal(drill.PhaseRestore, r.FailedPhase)
	s.Equal(key, r.CorruptChunk)
	s.True(r.TornDown)
	s.True(r.MarksBackup())
}

func (s *wfSuite) TestDrillCancelTearsDown() {
	reports := s.drillMocks(drillPlan())
	var cancelOnce sync.Once
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ activities.RestoreParams) (*activities.RestoreStats, error) {
		for ctx.Err() == nil { // runs until cancelled
			activity.RecordHeartbeat(ctx, "downloading")
			// The operator cancels once the restore runs (posted to the
			// test environment's loop, whatever the machine's load).
			cancelOnce.Do(s.env.CancelWorkflow)
			time.Sleep(10 * time.Millisecond)
		}
		return nil, ctx.Err()
	}).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.True(temporal.IsCanceledError(err), "%v", err)
	s.Require().Len(*reports, 1)
	r := (*reports)[0]
	s.Equal(drill.ResultFailed, r.Result)
	s.Equal("cancelled during restore", r.Error)
	s.True(r.TornDown)
}

func (s *wfSuite) TestDrillPointInTimeReplaysAndComparesGTID() {
	plan := drillPlan()
	plan.Target = binlog.Target{GTID: "0-1-30"}
	plan.PITR = &activities.PITRPlan{BackupID: "b2", StartFile: "binlog.000001", StartPos: 400}
	reports := s.drillMocks(plan)
	s.restoreOK()
	last := time.Date(2026, 11, 24, 8, 30, 0, 0, time.UTC)
	s.env.OnActivity(s.ag.ReplayBinlogs, mock.Anything, activities.ReplayParams{Instance: "db1", StartFile: "binlog.000001", StartPos: 400,
		Target: plan.Target, TargetDir: drillScratch.Datadir}).Return(&activities.ReplayResult{LastGTID: "0-1-30", LastTime: last}, nil).Once()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{GotGTIDSet: "0-1-30",
		HeartbeatAt: last.Add(-800 * time.Millisecond)}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1", Target: plan.Target})
	s.Require().NoError(s.env.GetWorkflowError())
	r := (*reports)[0]
	s.Equal("0-1-30", r.WantGTIDSet)
	s.Equal("GTID 0-1-30", r.Target)
	s.True(r.RPOExact)
	s.InDelta(0.8, r.RPOSeconds, 0.001)
	s.Equal(drill.PhaseReplay, r.Phases[1].Phase)
}

// A MySQL backup's executed GTID set is compared as a MySQL set: the
// recorded flavor says so (the tool field here says mariabackup).
func (s *wfSuite) TestDrillOfAMySQLBackupComparesItsGTIDSet() {
	plan := drillPlan()
	plan.Backup.ServerFlavor = flavor.MySQL
	plan.Backup.GTIDSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
	reports := s.drillMocks(plan)
	s.restoreOK()
	// The server prints the set in its own case and over lines.
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{
		GotGTIDSet: "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().NoError(s.env.GetWorkflowError())
	r := (*reports)[0]
	s.Equal(plan.Backup.GTIDSet, r.WantGTIDSet)
	s.Empty(r.Problems)
	s.Equal(drill.ResultPassed, r.Result)
}

// A restored MySQL server missing a transaction of the backup fails the
// drill.
func (s *wfSuite) TestDrillOfAMySQLBackupMissingATransactionFails() {
	plan := drillPlan()
	plan.Backup.ServerFlavor = flavor.MySQL
	plan.Backup.GTIDSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
	reports := s.drillMocks(plan)
	s.restoreOK()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{
		GotGTIDSet: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-4"}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().Error(s.env.GetWorkflowError())
	r := (*reports)[0]
	s.Equal(drill.ResultFailed, r.Result)
	s.Contains(r.Problems, `executed GTID set is "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-4", want "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"`)
}

// A GTID set of MySQL's shape in a MariaDB backup is a problem, not a
// MySQL backup.
func (s *wfSuite) TestDrillGTIDSetOfTheOtherShapeIsAProblem() {
	plan := drillPlan() // mariadb
	plan.Backup.GTIDSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
	reports := s.drillMocks(plan)
	s.restoreOK()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{GotGTIDSet: plan.Backup.GTIDSet}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().Error(s.env.GetWorkflowError())
	r := (*reports)[0]
	s.Equal(drill.ResultFailed, r.Result)
	s.Require().NotEmpty(r.Problems)
	s.Contains(r.Problems[0], "is not a MariaDB GTID")
}

// A plan recorded before summaries carried the flavor: the tool tells it.
func (s *wfSuite) TestDrillOfAnOldPlanTakesTheFlavorFromTheTool() {
	plan := drillPlan()
	plan.Backup.ServerFlavor, plan.Backup.Tool = "", "xtrabackup"
	plan.Backup.GTIDSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
	reports := s.drillMocks(plan)
	s.restoreOK()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{GotGTIDSet: plan.Backup.GTIDSet}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Empty((*reports)[0].Problems)
}

// A PrepareDrill that fails (here: it timed out after the agent may have
// created the dir) is still followed by a teardown, and the drill fails
// without marking the backup: the machinery failed, not the data.
func (s *wfSuite) TestDrillWhosePrepareFailedStillTearsDown() {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, activities.InstanceRequest{Instance: "db1"}).Return(route, nil)
	s.env.OnActivity(s.cat.PlanDrill, mock.Anything, mock.Anything).Return(drillPlan(), nil)
	s.env.OnActivity(s.ag.PrepareDrill, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("scratch dir: disk full", activities.ErrInsufficientSpace, nil))
	var reports []drill.Report
	s.env.OnActivity(s.cat.WriteDrillReport, mock.Anything, mock.Anything).Return(func(_ context.Context, r drill.Report) error {
		reports = append(reports, r)
		return nil
	})
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().Error(s.env.GetWorkflowError())
	s.Require().Len(reports, 1)
	s.Equal(drill.ResultFailed, reports[0].Result)
	s.True(reports[0].TornDown)
	s.False(reports[0].MarksBackup())
	s.env.AssertExpectations(s.T())
}

// A drill id whose report exists: the drill runs nothing and writes no
// report (the one there is another drill's), and says to pick another id.
func (s *wfSuite) TestDrillWithATakenIDWritesNoReport() {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, activities.InstanceRequest{Instance: "db1"}).Return(route, nil)
	s.env.OnActivity(s.cat.PlanDrill, mock.Anything, activities.DrillPlanRequest{Instance: "db1", DrillID: "d1"}).Return(nil,
		temporal.NewNonRetryableApplicationError("drill id d1 of db1 is taken: start the drill with another id", activities.ErrDrillIDTaken, nil))
	written := 0
	s.env.OnActivity(s.cat.WriteDrillReport, mock.Anything, mock.Anything).Return(func(_ context.Context, r drill.Report) error {
		written++
		return nil
	}).Maybe()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrDrillIDTaken, ae.Type())
	s.Zero(written)
}

// A restore that fails because the drill agent holds no key for the
// backup records KeyNotHeld: the report does not mark the backup.
func (s *wfSuite) TestDrillOnAnAgentWithoutTheKeyDoesNotMarkTheBackup() {
	reports := s.drillMocks(drillPlan())
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("cannot restore b2 of db1 on agent h1: no usable encryption key", activities.ErrDecryptFailed, nil,
			activities.KeyNotHeld{Agent: "h1"})).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().Error(s.env.GetWorkflowError())
	s.Require().Len(*reports, 1)
	r := (*reports)[0]
	s.Equal(drill.PhaseRestore, r.FailedPhase)
	s.Equal(activities.ErrDecryptFailed, r.ErrorType)
	s.True(r.KeyNotHeld)
	s.False(r.MarksBackup())
}

// A drill to the newest archived transaction (a file/position target)
// compares the executed GTID set with the archive's last transaction at
// the target, not with what the replay says it applied: a replay that
// stopped short fails the drill.
func (s *wfSuite) TestDrillReplayShortOfTheArchivesTargetFails() {
	plan := drillPlan()
	plan.Target = binlog.Target{File: "binlog.000002", Pos: 900}
	plan.TargetGTID = "0-1-30"
	plan.PITR = &activities.PITRPlan{BackupID: "b2", StartFile: "binlog.000001", StartPos: 400}
	plan.CompareSums = false
	reports := s.drillMocks(plan)
	s.restoreOK()
	s.env.OnActivity(s.ag.ReplayBinlogs, mock.Anything, mock.Anything).Return(&activities.ReplayResult{LastGTID: "0-1-25",
		LastTime: time.Date(2026, 11, 24, 8, 30, 0, 0, time.UTC)}, nil).Once()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{TablesChecked: 3, GotGTIDSet: "0-1-25"}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().Error(s.env.GetWorkflowError())
	s.Require().Len(*reports, 1)
	r := (*reports)[0]
	s.Equal(drill.ResultFailed, r.Result)
	s.Equal("0-1-30", r.WantGTIDSet)
	s.Contains(r.Problems[0], `executed GTID set is "0-1-25", want "0-1-30"`)
}

// A drill whose restored server has no user table says so: it verified
// no data.
func (s *wfSuite) TestDrillOfNoTablesSaysItCheckedNoData() {
	plan := drillPlan()
	plan.CompareSums = false
	s.drillMocks(plan)
	s.restoreOK()
	s.env.OnActivity(s.ag.VerifyDrill, mock.Anything, mock.Anything).Return(&activities.DrillVerifyResult{GotGTIDSet: "0-1-20"}, nil).Once()
	s.teardownOnce()
	s.env.ExecuteWorkflow(DrillWorkflow, DrillRequest{Instance: "db1", DrillID: "d1"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res DrillResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Contains(res.Notes, "the restored server has no user table: the drill checked that it starts, and no data")
}
