package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/flavor"
)

type wfSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
	cat *activities.Catalog
	ag  *activities.Agent
}

func TestWorkflows(t *testing.T) { suite.Run(t, new(wfSuite)) }

func (s *wfSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.cat, s.ag = &activities.Catalog{}, &activities.Agent{}
	s.env.RegisterActivity(s.cat)
	s.env.RegisterActivity(s.ag)
	s.env.SetStartTime(time.Date(2026, 11, 24, 8, 45, 0, 0, time.UTC))
}

var route = &activities.InstanceRoute{Instance: "db1", Host: "h1", TaskQueue: "strata-agent.h1",
	ArchiveTaskQueue: "strata-agent.h1.binlog", AgentStartTimeout: time.Minute, BackupTimeout: time.Hour,
	PreflightTimeout: 12 * time.Minute}

// preflightPasses mocks a pre-flight check that lets the backup go.
func (s *wfSuite) preflightPasses() {
	s.env.OnActivity(s.ag.Preflight, mock.Anything, activities.PreflightParams{Instance: "db1"}).
		Return(&activities.PreflightResult{Checked: 1}, nil).Maybe()
}

func (s *wfSuite) resolve() {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, activities.InstanceRequest{Instance: "db1"}).Return(route, nil)
	s.env.OnActivity(s.cat.PlanBackup, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.PlanRequest) (*activities.BackupPlan, error) {
			return &activities.BackupPlan{Type: r.Type, ChainLength: 1}, nil
		}).Maybe()
	s.preflightPasses()
}

func (s *wfSuite) chain(ids ...string) {
	var sums []activities.BackupSummary
	for i, id := range ids {
		typ := "incremental"
		if i == 0 {
			typ = "full"
		}
		sums = append(sums, activities.BackupSummary{Instance: "db1", BackupID: id, Type: typ, GTIDSet: "0-1-" + id})
	}
	s.env.OnActivity(s.cat.ResolveChain, mock.Anything, activities.BackupRef{Instance: "db1", BackupID: ids[len(ids)-1]}).Return(sums, nil)
}

func (s *wfSuite) TestBackupHappyPathDefaultsIDAndType() {
	s.resolve()
	s.env.OnActivity(s.ag.Backup, mock.Anything, activities.BackupParams{Instance: "db1", BackupID: "20261124T084500Z", Type: "full"}).
		Return(&activities.BackupSummary{Instance: "db1", BackupID: "20261124T084500Z", Type: "full", RawSize: 200e6, DurationSeconds: 2}, nil).Once()
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1"})
	s.Require().True(s.env.IsWorkflowCompleted())
	s.Require().NoError(s.env.GetWorkflowError())
	var res BackupResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("20261124T084500Z", res.BackupID)
	s.Equal("h1", res.Host)
	s.InDelta(100.0, res.ThroughputMBps, 0.001)
}

func (s *wfSuite) TestBackupTransientFailureIsRetried() {
	s.resolve()
	calls := 0
	s.env.OnActivity(s.ag.Backup, mock.Anything, mock.Anything).Return(
		func(_ context.Context, p activities.BackupParams) (*activities.BackupSummary, error) {
			calls++
			if calls < 3 {
				return nil, errors.New("connection reset by peer")
			}
			return &activities.BackupSummary{Instance: p.Instance, BackupID: p.BackupID, Type: p.Type}, nil
		})
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1", BackupID: "b1"})
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(3, calls)
}

func (s *wfSuite) TestBackupNonRetryableErrorSurfacesOnce() {
	s.resolve()
	calls := 0
	s.env.OnActivity(s.ag.Backup, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.BackupParams) (*activities.BackupSummary, error) {
			calls++
			return nil, temporal.NewNonRetryableApplicationError("access denied for root@tcp(127.0.0.1:3306): check connect.user", activities.ErrAuthFailed, nil)
		})
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1", BackupID: "b1"})
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrAuthFailed, ae.Type())
	s.Contains(ae.Error(), "check connect.user")
	s.Equal(1, calls)
}

func (s *wfSuite) TestBackupUnknownInstance() {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, mock.Anything).
		Return(nil, temporal.NewNonRetryableApplicationError(`unknown instance "nope"`, activities.ErrUnknownInstance, nil))
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "nope"})
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &ae))
	s.Equal(activities.ErrUnknownInstance, ae.Type())
}

func (s *wfSuite) TestBackupRejectsBadRequest() {
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{})
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &ae))
	s.Equal(activities.ErrInvalidRequest, ae.Type())
}

func (s *wfSuite) TestBackupAgentUnavailable() {
	s.resolve()
	s.env.OnActivity(s.ag.Backup, mock.Anything, mock.Anything).
		Return(nil, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil))
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1", BackupID: "b1"})
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &ae), "%v", s.env.GetWorkflowError())
	s.Equal("AgentUnavailable", ae.Type())
	s.Contains(ae.Error(), "strata agent --host h1")
}

func (s *wfSuite) TestRestoreHappyPathWithStart() {
	s.resolve()
	s.chain("b1")
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, activities.RestoreParams{Instance: "db1", BackupID: "b1", Chain: []string{"b1"}, TargetDir: "/data/r1", MaxAttempts: 5}).
		Return(&activities.RestoreStats{TargetDir: "/data/r1", FetchSeconds: 1}, nil).Once()
	s.env.OnActivity(s.ag.StartServer, mock.Anything, activities.StartServerParams{Instance: "db1", TargetDir: "/data/r1", Port: 3307}).
		Return(&activities.StartServerResult{PID: 123, Port: 3307}, nil).Once()
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", BackupID: "b1", TargetDir: "/data/r1", Start: true, Port: 3307})
	s.Require().NoError(s.env.GetWorkflowError())
	var res RestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("h1", res.TargetHost)
	s.Equal("0-1-b1", res.Backup.GTIDSet)
	s.Require().NotNil(res.Server)
	s.Equal(123, res.Server.PID)
}

// The server a restore starts is the flavor of the backup's manifest
// (here a MySQL clone backup), so that the agent starts mysqld on it.
func (s *wfSuite) TestRestoreStartsTheServerOfTheBackupsFlavor() {
	s.resolve()
	s.env.OnActivity(s.cat.ResolveChain, mock.Anything, activities.BackupRef{Instance: "db1", BackupID: "c1"}).Return([]activities.BackupSummary{
		{Instance: "db1", BackupID: "c1", Type: "full", Tool: "clone", ServerFlavor: flavor.MySQL, GTIDSet: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"}}, nil)
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(&activities.RestoreStats{TargetDir: "/data/r1"}, nil).Once()
	s.env.OnActivity(s.ag.StartServer, mock.Anything, activities.StartServerParams{Instance: "db1", TargetDir: "/data/r1", Port: 3307, Flavor: flavor.MySQL}).
		Return(&activities.StartServerResult{PID: 123, Port: 3307}, nil).Once()
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", BackupID: "c1", TargetDir: "/data/r1", Start: true, Port: 3307})
	s.Require().NoError(s.env.GetWorkflowError())
}

func (s *wfSuite) TestRestoreToOtherHostAndRetry() {
	s.resolve()
	s.chain("b1")
	calls := 0
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, mock.Anything).Return(
		func(_ context.Context, p activities.RestoreParams) (*activities.RestoreStats, error) {
			calls++
			if calls == 1 {
				return nil, errors.New("storage: 503")
			}
			return &activities.RestoreStats{TargetDir: p.TargetDir}, nil
		})
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", BackupID: "b1", TargetDir: "/r", TargetHost: "h2"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res RestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("h2", res.TargetHost)
	s.Nil(res.Server)
	s.Equal(2, calls)
}

func (s *wfSuite) TestRestoreUnknownBackup() {
	s.resolve()
	s.env.OnActivity(s.cat.ResolveChain, mock.Anything, mock.Anything).
		Return(nil, temporal.NewNonRetryableApplicationError(`backup "x" of instance "db1" not found`, activities.ErrBackupNotFound, nil))
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", BackupID: "x", TargetDir: "/r"})
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(s.env.GetWorkflowError(), &ae))
	s.Equal(activities.ErrBackupNotFound, ae.Type())
}

func (s *wfSuite) TestIncrementalUsesThePlannedBase() {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, mock.Anything).Return(route, nil)
	s.preflightPasses()
	s.env.OnActivity(s.cat.PlanBackup, mock.Anything, activities.PlanRequest{Instance: "db1", Type: "incremental"}).
		Return(&activities.BackupPlan{Type: "incremental", ParentID: "f1", FromLSN: 4711, ChainLength: 2}, nil)
	s.env.OnActivity(s.ag.Backup, mock.Anything, activities.BackupParams{Instance: "db1", BackupID: "i1", Type: "incremental", ParentID: "f1", FromLSN: 4711}).
		Return(&activities.BackupSummary{BackupID: "i1", Type: "incremental", ParentID: "f1"}, nil).Once()
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1", BackupID: "i1", Type: "incremental"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res BackupResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal(2, res.ChainLength)
	s.Equal("f1", res.ParentID)
}

func (s *wfSuite) TestPlanCanTurnAnIncrementalIntoAFull() {
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, mock.Anything).Return(route, nil)
	s.preflightPasses()
	s.env.OnActivity(s.cat.PlanBackup, mock.Anything, activities.PlanRequest{Instance: "db1", Type: "incremental", AutoFull: true}).
		Return(&activities.BackupPlan{Type: "full", ChainLength: 1, Note: "no base: taking a full"}, nil)
	s.env.OnActivity(s.ag.Backup, mock.Anything, activities.BackupParams{Instance: "db1", BackupID: "x", Type: "full"}).
		Return(&activities.BackupSummary{BackupID: "x", Type: "full"}, nil).Once()
	s.env.ExecuteWorkflow(BackupWorkflow, BackupRequest{Instance: "db1", BackupID: "x", Type: "incremental", AutoFull: true})
	s.Require().NoError(s.env.GetWorkflowError())
	var res BackupResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("full", res.Type)
	s.Contains(res.Note, "taking a full")
}

func (s *wfSuite) TestRestoreAppliesTheWholeChain() {
	s.resolve()
	s.chain("f1", "i1", "i2")
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, activities.RestoreParams{Instance: "db1", BackupID: "i2", Chain: []string{"f1", "i1", "i2"}, TargetDir: "/r", MaxAttempts: 5}).
		Return(&activities.RestoreStats{TargetDir: "/r"}, nil).Once()
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", BackupID: "i2", TargetDir: "/r"})
	s.Require().NoError(s.env.GetWorkflowError())
	var res RestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal([]string{"f1", "i1", "i2"}, res.Chain)
	s.Equal("i2", res.Backup.BackupID)
}

// "/x/", "/x/." and "/x" are one target: the activities get it cleaned,
// and the allow-unencrypted choice is passed on.
func (s *wfSuite) TestRestoreTargetNormalized() {
	s.resolve()
	s.chain("b1")
	s.env.OnActivity(s.ag.RestoreBackup, mock.Anything, activities.RestoreParams{Instance: "db1", BackupID: "b1", Chain: []string{"b1"},
		TargetDir: "/data/r1", AllowUnencrypted: true, MaxAttempts: 5}).
		Return(&activities.RestoreStats{TargetDir: "/data/r1"}, nil).Once()
	s.env.OnActivity(s.ag.StartServer, mock.Anything, activities.StartServerParams{Instance: "db1", TargetDir: "/data/r1", Port: 3307}).
		Return(&activities.StartServerResult{PID: 1, Port: 3307}, nil).Once()
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", BackupID: "b1", TargetDir: "/data//r1/./", Start: true, Port: 3307, AllowUnencrypted: true})
	s.Require().NoError(s.env.GetWorkflowError())
}

func TestRestoreValidation(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	for _, req := range []RestoreRequest{
		{BackupID: "b", TargetDir: "/r"},
		{Instance: "db1", TargetDir: "/r"},
		{Instance: "db1", BackupID: "b", TargetDir: "relative"},
		{Instance: "db1", BackupID: "b", TargetDir: "/r", Start: true},
	} {
		env := ts.NewTestWorkflowEnvironment()
		env.ExecuteWorkflow(RestoreWorkflow, req)
		var ae *temporal.ApplicationError
		require.True(t, errors.As(env.GetWorkflowError(), &ae), "%+v", req)
		require.Equal(t, activities.ErrInvalidRequest, ae.Type())
	}
}
