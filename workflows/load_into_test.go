package workflows

import (
	"context"
	"errors"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
)

// A load into a running server (Into) is routed to the agent of the
// target instance's host, not the backup's, and carries the filters,
// renames and options to it.
func (s *wfSuite) TestLoadIntoRunsOnTheTargetInstancesAgent() {
	r2 := *route
	r2.Instance, r2.Host, r2.TaskQueue = "db2", "h2", "strata-agent.h2"
	s.env.OnActivity(s.cat.ResolveInstance, mock.Anything, activities.InstanceRequest{Instance: "db2"}).Return(&r2, nil).Once()
	s.env.OnActivity(s.cat.ResolveChain, mock.Anything, activities.BackupRef{Instance: "db1", BackupID: "l1"}).Return(
		[]activities.BackupSummary{{Instance: "db1", BackupID: "l1", Type: "logical", GTIDSet: "0-1-9"}}, nil).Once()
	want := activities.LoadParams{Instance: "db1", BackupID: "l1", Into: "db2", Include: []string{"shop.*"}, Exclude: []string{"shop.tmp_*"},
		Rename: []string{"shop.orders=shop.orders_restored"}, Replace: true}
	var queue string
	s.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "LoadLogical" {
			queue = info.TaskQueue
		}
	})
	s.env.OnActivity(s.ag.LoadLogical, mock.Anything, want).Return(&activities.LoadResult{Into: "db2", Files: 7, Rows: 42, Tables: 2}, nil).Once()
	s.env.ExecuteWorkflow(RestoreWorkflow, RestoreRequest{Instance: "db1", BackupID: "l1", Into: "db2", Include: want.Include,
		Exclude: want.Exclude, Rename: want.Rename, Replace: true})
	s.Require().NoError(s.env.GetWorkflowError())
	var res RestoreResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal("strata-agent.h2", queue)
	s.Equal("h2", res.TargetHost)
	s.Require().NotNil(res.Load)
	s.Equal(int64(42), res.Load.Rows)
	s.Equal(int64(42), res.Stats.Rows)
}

// Into with a target datadir, a server start, a point-in-time target or no
// backup is refused before anything runs.
func (s *wfSuite) TestLoadIntoRefusesWhatOnlyANewDatadirTakes() {
	for _, req := range []RestoreRequest{
		{Instance: "db1", BackupID: "l1", Into: "db2", TargetDir: "/r"},
		{Instance: "db1", BackupID: "l1", Into: "db2", Start: true, Port: 3307},
		{Instance: "db1", BackupID: "l1", Into: "db2", Target: binlog.Target{GTID: "0-1-5"}},
		{Instance: "db1", Into: "db2"},
	} {
		s.SetupTest()
		s.env.ExecuteWorkflow(RestoreWorkflow, req)
		var ae *temporal.ApplicationError
		s.Require().True(errors.As(s.env.GetWorkflowError(), &ae), "%+v: %v", req, s.env.GetWorkflowError())
		s.Equal(activities.ErrInvalidRequest, ae.Type(), "%+v", req)
	}
}
