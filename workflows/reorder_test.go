package workflows_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/workflows"
)

// reorderHistory is a BackupWorkflow history recorded from a real run
// (ResolveInstance, PlanBackup, Backup), of the code before the pre-flight
// check: no version marker in it.
var reorderHistory = filepath.Join("testdata", "histories", "20261201-1840", "BackupWorkflow-TestIncrementalAndDifferentialChains-01.json")

func catalogOpts(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
}

// steps runs BackupWorkflow's commands, the first two in the given order.
func steps(ctx workflow.Context, req workflows.BackupRequest, planFirst bool) (*workflows.BackupResult, error) {
	var cat *activities.Catalog
	var agent *activities.Agent
	var route activities.InstanceRoute
	var plan activities.BackupPlan
	resolve := func() error {
		return workflow.ExecuteActivity(catalogOpts(ctx), cat.ResolveInstance, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &route)
	}
	planBackup := func() error {
		return workflow.ExecuteActivity(catalogOpts(ctx), cat.PlanBackup, activities.PlanRequest{Instance: req.Instance, Type: req.Type}).Get(ctx, &plan)
	}
	first, second := resolve, planBackup
	if planFirst {
		first, second = planBackup, resolve
	}
	if err := first(); err != nil {
		return nil, err
	}
	if err := second(); err != nil {
		return nil, err
	}
	var sum activities.BackupSummary
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{TaskQueue: route.TaskQueue, StartToCloseTimeout: route.BackupTimeout})
	if err := workflow.ExecuteActivity(actx, agent.Backup, activities.BackupParams{Instance: req.Instance}).Get(ctx, &sum); err != nil {
		return nil, err
	}
	return &workflows.BackupResult{BackupSummary: sum}, nil
}

func replayAs(t *testing.T, fn func(workflow.Context, workflows.BackupRequest) (*workflows.BackupResult, error)) error {
	t.Helper()
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(fn, workflow.RegisterOptions{Name: workflows.BackupWorkflowName})
	return r.ReplayWorkflowHistoryFromJSONFile(nil, reorderHistory)
}

// TestReplayCatchesAReorderWithoutGetVersion shows what the replay of
// recorded histories guards against: a copy of BackupWorkflow with two
// steps swapped (the plan before the route), registered under the
// workflow's name, fails to replay a recorded history with a
// nondeterminism error, while the same change behind workflow.GetVersion
// replays it (a history without the marker takes the old order).
func TestReplayCatchesAReorderWithoutGetVersion(t *testing.T) {
	require.NoError(t, replayAs(t, func(ctx workflow.Context, req workflows.BackupRequest) (*workflows.BackupResult, error) {
		return steps(ctx, req, false)
	}), "the unchanged copy replays: the copy is faithful")

	err := replayAs(t, func(ctx workflow.Context, req workflows.BackupRequest) (*workflows.BackupResult, error) {
		return steps(ctx, req, true)
	})
	require.Error(t, err, "swapped steps without GetVersion must not replay")
	t.Logf("replay of the reordered copy: %v", err)
	require.ErrorContains(t, err, "nondeterministic")

	require.NoError(t, replayAs(t, func(ctx workflow.Context, req workflows.BackupRequest) (*workflows.BackupResult, error) {
		v := workflow.GetVersion(ctx, "plan-first", workflow.DefaultVersion, 1)
		return steps(ctx, req, v == 1)
	}), "the swap behind GetVersion replays the old history")
}
