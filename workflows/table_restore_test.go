package workflows

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/tablecopy"
)

var (
	tableScratch = &drill.Scratch{Dir: "/scratch/drills/db1/table-r1", Datadir: "/scratch/drills/db1/table-r1/data"}
	tableRef     = activities.PrepareDrillParams{Instance: "db1", DrillID: "table-r1"}
	orders       = tablecopy.TableName{Schema: "shop", Table: "orders"}
	ordersBack   = tablecopy.TableName{Schema: "shop", Table: "orders_restored"}
)

// tableMocks records the order of the activities of a table restore of
// shop.orders into db1 as shop.orders_restored, from backup b2 (chain b1,
// b2), replayed to GTID 0-1-30 when target is set.
func (s *wfSuite) tableMocks(target bool) *[]string {
	var mu sync.Mutex
	var calls []string
	rec := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, name)
	}
	s.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) { rec(info.ActivityType.Name) })
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, activities.InstanceRequest{Instance: "db1"}).Return(route, nil)
	plan := drillPlan()
	plan.CompareSums = false
	plan.Notes = []string{"backup b2 has no table sums: row counts and checksums are not compared"}
	want := activities.DrillPlanRequest{Instance: "db1", BackupOnly: true}
	if target {
		plan.Target = binlog.Target{GTID: "0-1-30"}
		plan.PITR = &activities.PITRPlan{BackupID: "b2", StartFile: "binlog.000001", StartPos: 400}
		want = activities.DrillPlanRequest{Instance: "db1", Target: plan.Target}
	}
	s.env.OnActivity(s.cat.PlanDrill, mock.Anything, want).Return(plan, nil).Maybe()
	s.env.OnActivity(s.ag.PrepareDrill, mock.Anything, tableRef).Return(tableScratch, nil).Maybe()
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, activities.RestoreParams{Instance: "db1", BackupID: "b2", Chain: []string{"b1", "b2"},
		TargetDir: tableScratch.Datadir, MaxAttempts: int(retry.MaximumAttempts)}).Return(&activities.RestoreStats{}, nil).Maybe()
	s.env.OnActivity(s.ag.ReplayBinlogs, mock.Anything, activities.ReplayParams{Instance: "db1", StartFile: "binlog.000001", StartPos: 400,
		Target: binlog.Target{GTID: "0-1-30"}, TargetDir: tableScratch.Datadir}).
		Return(&activities.ReplayResult{LastGTID: "0-1-30", LastTime: time.Date(2026, 11, 24, 8, 30, 0, 0, time.UTC)}, nil).Maybe()
	s.env.OnActivity(s.ag.StartServer, mock.Anything, activities.StartServerParams{Instance: "db1", TargetDir: tableScratch.Datadir, PickPort: true, Flavor: "mariadb"}).
		Return(&activities.StartServerResult{Port: 41234, PID: 99}, nil).Maybe()
	return &calls
}

func (s *wfSuite) tableImportOK(replace bool) {
	s.env.OnActivity(s.ag.CheckTableDestination, mock.Anything, activities.TableCheckParams{Into: "db1", Dest: ordersBack, Replace: replace}).
		Return(&activities.TableCheckResult{}, nil).Once()
	s.env.OnActivity(s.ag.ImportTable, mock.Anything, mock.MatchedBy(func(p activities.TableImportParams) bool {
		return p.Instance == "db1" && p.Into == "db1" && p.RestoreID == "r1" && p.Source == orders && p.Dest == ordersBack &&
			p.ScratchDatadir == tableScratch.Datadir && p.Port == 41234 && p.Replace == replace && p.Point != ""
	})).Return(&tablecopy.Result{Source: orders, Dest: ordersBack, Method: tablecopy.MethodTransport,
		SourceSum: tablecopy.Sum{Rows: 10, Checksum: "123"}, DestSum: tablecopy.Sum{Rows: 10, Checksum: "123"}}, nil).Once()
}

func (s *wfSuite) tableTeardownOnce() {
	s.env.OnActivity(s.ag.TeardownDrill, mock.Anything, tableRef).Return(nil).Once()
}

func tableReq() TableRestoreRequest {
	return TableRestoreRequest{Instance: "db1", Table: "shop.orders", As: "shop.orders_restored", RestoreID: "r1", Target: binlog.Target{GTID: "0-1-30"}}
}

func phasesOf(r *TableRestoreResult) []string {
	var out []string
	for _, p := range r.Phases {
		out = append(out, p.Phase)
	}
	return out
}

func (s *wfSuite) TestTableRestoreRunsItsPhasesInOrderAndTearsDown() {
	calls := s.tableMocks(true)
	s.tableImportOK(false)
	s.tableTeardownOnce()
	s.env.ExecuteWorkflow(TableRestoreWorkflow, tableReq())
	s.Require().NoError(s.env.GetWorkflowError())
	var res TableRestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal([]string{"ResolveInstance", "CheckTableDestination", "PlanDrill", "PrepareDrill", "RestoreBackup", "ReplayBinlogs",
		"StartServer", "ImportTable", "TeardownDrill"}, *calls)
	s.Equal([]string{PhaseCheck, drill.PhaseRestore, drill.PhaseReplay, drill.PhaseStart, PhaseImport, drill.PhaseTeardown}, phasesOf(&res))
	s.True(res.TornDown)
	s.Equal("b2", res.BackupID)
	s.Equal("h1", res.Host)
	s.Equal("db1", res.Into)
	s.Equal(tablecopy.MethodTransport, res.Import.Method)
	s.Equal(res.Import.SourceSum, res.Import.DestSum)
	s.Contains(res.Point, "0-1-30")
	s.Empty(res.Notes, "the drill's notes on table sums are not the table restore's")
}

func (s *wfSuite) TestTableRestoreWithoutATargetRestoresTheBackupAlone() {
	calls := s.tableMocks(false)
	s.tableImportOK(false)
	s.tableTeardownOnce()
	req := tableReq()
	req.Target = binlog.Target{}
	s.env.ExecuteWorkflow(TableRestoreWorkflow, req)
	s.Require().NoError(s.env.GetWorkflowError())
	s.NotContains(*calls, "ReplayBinlogs")
	var res TableRestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Contains(res.Point, "backup b2")
}

// A destination that exists is refused before any restore work: no plan,
// no scratch dir, no restore, nothing to tear down.
func (s *wfSuite) TestTableRestoreRefusesAnExistingDestinationBeforeAnyWork() {
	calls := s.tableMocks(true)
	s.env.OnActivity(s.ag.CheckTableDestination, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("table exists: shop.orders_restored is on the live server; use --as", activities.ErrTableExists, nil)).Once()
	s.env.ExecuteWorkflow(TableRestoreWorkflow, tableReq())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrTableExists, ae.Type())
	s.Contains(ae.Error(), "in phase check")
	s.Contains(ae.Error(), "--as")
	s.Equal([]string{"ResolveInstance", "CheckTableDestination"}, *calls)
}

// A failed import (the table is not in the backup) fails with its type,
// naming the phase, after the teardown.
func (s *wfSuite) TestTableRestoreFailureTearsDownAndKeepsTheType() {
	calls := s.tableMocks(true)
	s.env.OnActivity(s.ag.CheckTableDestination, mock.Anything, mock.Anything).Return(&activities.TableCheckResult{}, nil).Once()
	s.env.OnActivity(s.ag.ImportTable, mock.Anything, mock.Anything).Return(nil,
		temporal.NewNonRetryableApplicationError("table not found: shop.orders", activities.ErrTableNotFound, nil)).Once()
	s.tableTeardownOnce()
	s.env.ExecuteWorkflow(TableRestoreWorkflow, tableReq())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrTableNotFound, ae.Type())
	s.Contains(ae.Error(), "in phase import")
	s.Equal("TeardownDrill", (*calls)[len(*calls)-1])
}

// A restore that fails in PrepareDrill still tears down (the dir may have
// been made).
func (s *wfSuite) TestTableRestoreTearsDownAfterAFailedPrepare() {
	s.env.OnActivity(s.ag.PrepareDrill, mock.Anything, tableRef).Return(nil,
		temporal.NewNonRetryableApplicationError("unsafe scratch", activities.ErrConfig, nil)).Once()
	calls := s.tableMocks(true)
	s.env.OnActivity(s.ag.CheckTableDestination, mock.Anything, mock.Anything).Return(&activities.TableCheckResult{}, nil).Once()
	s.tableTeardownOnce()
	s.env.ExecuteWorkflow(TableRestoreWorkflow, tableReq())
	s.Require().Error(s.env.GetWorkflowError())
	s.Equal([]string{"ResolveInstance", "CheckTableDestination", "PlanDrill", "PrepareDrill", "TeardownDrill"}, *calls)
}

func (s *wfSuite) TestTableRestoreCancelTearsDown() {
	calls := s.tableMocks(true)
	s.env.OnActivity(s.ag.CheckTableDestination, mock.Anything, mock.Anything).Return(&activities.TableCheckResult{}, nil).Once()
	var once sync.Once
	s.env.OnActivity(s.ag.ImportTable, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ activities.TableImportParams) (*tablecopy.Result, error) {
		for ctx.Err() == nil {
			activity.RecordHeartbeat(ctx, "copying")
			once.Do(s.env.CancelWorkflow)
			time.Sleep(10 * time.Millisecond)
		}
		return nil, ctx.Err()
	}).Once()
	s.tableTeardownOnce()
	s.env.ExecuteWorkflow(TableRestoreWorkflow, tableReq())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.True(temporal.IsCanceledError(err), "%v", err)
	s.Equal("TeardownDrill", (*calls)[len(*calls)-1])
}

func (s *wfSuite) TestTableRestoreRejectsBadNames() {
	for _, req := range []TableRestoreRequest{
		{Instance: "db1", Table: "orders"},
		{Instance: "db1", Table: "shop.orders", As: "a.b.c"},
		{Instance: "db1", Table: "shop.orders", RestoreID: "../x"},
		{Table: "shop.orders"},
	} {
		s.SetupTest()
		s.env.ExecuteWorkflow(TableRestoreWorkflow, req)
		err := s.env.GetWorkflowError()
		s.Require().Error(err, "%+v", req)
		var ae *temporal.ApplicationError
		s.Require().True(errors.As(err, &ae))
		s.Equal(activities.ErrInvalidRequest, ae.Type(), "%+v", req)
	}
}

// Into another instance: the scratch server runs on the agent of the live
// instance's host (h2), the restore reads the backup's instance (db1).
func (s *wfSuite) TestTableRestoreIntoAnotherInstanceRunsOnItsHost() {
	route2 := *route
	route2.Instance, route2.Host, route2.TaskQueue = "db2", "h2", "strata-agent.h2"
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, activities.InstanceRequest{Instance: "db2"}).Return(&route2, nil).Once()
	queues := map[string]string{}
	s.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		queues[info.ActivityType.Name] = info.TaskQueue
	})
	plan := drillPlan()
	s.env.OnActivity(s.cat.PlanDrill, mock.Anything, activities.DrillPlanRequest{Instance: "db1", BackupOnly: true}).Return(plan, nil).Once()
	s.env.OnActivity(s.ag.CheckTableDestination, mock.Anything, activities.TableCheckParams{Into: "db2", Dest: orders}).Return(&activities.TableCheckResult{}, nil).Once()
	s.env.OnActivity(s.ag.PrepareDrill, mock.Anything, tableRef).Return(tableScratch, nil).Once()
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(&activities.RestoreStats{}, nil).Once()
	s.env.OnActivity(s.ag.StartServer, mock.Anything, mock.Anything).Return(&activities.StartServerResult{Port: 41234}, nil).Once()
	s.env.OnActivity(s.ag.ImportTable, mock.Anything, mock.MatchedBy(func(p activities.TableImportParams) bool {
		return p.Instance == "db1" && p.Into == "db2" && p.Dest == orders
	})).Return(&tablecopy.Result{Method: tablecopy.MethodTransport}, nil).Once()
	s.tableTeardownOnce()
	s.env.ExecuteWorkflow(TableRestoreWorkflow, TableRestoreRequest{Instance: "db1", Table: "shop.orders", Into: "db2", RestoreID: "r1"})
	s.Require().NoError(s.env.GetWorkflowError())
	for _, a := range []string{"CheckTableDestination", "PrepareDrill", "RestoreBackup", "StartServer", "ImportTable", "TeardownDrill"} {
		s.Equal("strata-agent.h2", queues[a], a)
	}
	var res TableRestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("h2", res.Host)
}
