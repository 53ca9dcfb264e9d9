package logging

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"WorkflowID":      "workflow_id",
		"RunID":           "run_id",
		"WorkflowType":    "workflow_type",
		"ActivityID":      "activity_id",
		"ActivityType":    "activity_type",
		"TaskQueue":       "task_queue",
		"WorkerID":        "worker_id",
		"Namespace":       "namespace",
		"Attempt":         "attempt",
		"Error":           "error",
		"HTTPStatus":      "http_status",
		"ChildWorkflowID": "child_workflow_id",
		"backup_id":       "backup_id",
		"instance":        "instance",
		"Last_Error":      "last_error",
		"Step2Done":       "step2_done",
		"":                "",
	} {
		assert.Equal(t, want, SnakeCase(in), in)
	}
}

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

func fieldMap(e observer.LoggedEntry) map[string]any { return e.ContextMap() }

func TestTemporalAdapterSpellsTheSDKKeysInSnakeCase(t *testing.T) {
	z, logs := observed()
	l := NewTemporal(z).With("WorkflowID", "wf", "RunID", "run", "instance", "db1")
	l.Info("hello", "ActivityType", "Backup", zap.String("backup_id", "b1"), "Attempt", int32(2))
	l.Warn("odd", "Dangling")
	require.GreaterOrEqual(t, logs.Len(), 2)
	got := fieldMap(logs.FilterMessage("hello").All()[0])
	assert.Equal(t, map[string]any{"workflow_id": "wf", "run_id": "run", "instance": "db1", "activity_type": "Backup",
		"backup_id": "b1", "attempt": int32(2)}, got)
	for k := range fieldMap(logs.FilterMessage("odd").All()[0]) {
		assert.NotContains(t, []string{"WorkflowID", "RunID"}, k)
	}
}

type req struct {
	Instance string
	BackupID string
}

func logWorkflow(ctx workflow.Context, r req) error {
	workflow.GetLogger(ctx).Info("before")
	AddWorkflowFields(ctx, "backup_id", "chosen")
	workflow.GetLogger(ctx).Info("after")
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	return workflow.ExecuteActivity(ctx, logActivity, &req{Instance: r.Instance, BackupID: "chosen"}).Get(ctx, nil)
}

func logActivity(ctx context.Context, r *req) error {
	activity.GetLogger(ctx).Info("in activity")
	return nil
}

func TestIDsAddInstanceAndBackupIDToWorkflowAndActivityLines(t *testing.T) {
	z, logs := observed()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(NewTemporal(z))
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&IDs{}}})
	env.RegisterWorkflow(logWorkflow)
	env.RegisterActivity(logActivity)
	env.ExecuteWorkflow(logWorkflow, req{Instance: "db1"})
	require.NoError(t, env.GetWorkflowError())

	lines := map[string]map[string]any{}
	for _, e := range logs.All() {
		lines[e.Message] = fieldMap(e)
	}
	require.Contains(t, lines, "before")
	require.Contains(t, lines, "after")
	require.Contains(t, lines, "in activity")
	assert.Equal(t, "db1", lines["before"]["instance"])
	assert.NotContains(t, lines["before"], "backup_id", "the request names no backup id yet")
	for _, msg := range []string{"after", "in activity"} {
		l := lines[msg]
		assert.Equal(t, "db1", l["instance"], msg)
		assert.Equal(t, "chosen", l["backup_id"], msg)
		assert.NotContains(t, l, "WorkflowID", msg)
	}
	// The test environment's workflow logger has no ids; its activity
	// logger has them, as a real worker's loggers of both.
	assert.NotEmpty(t, lines["in activity"]["workflow_id"])
	assert.NotEmpty(t, lines["in activity"]["run_id"])
	assert.Equal(t, "logActivity", lines["in activity"]["activity_type"])
}

func TestIDFields(t *testing.T) {
	assert.Equal(t, []any{"instance", "a", "backup_id", "b"}, IDFields([]any{&req{Instance: "a", BackupID: "b"}}))
	assert.Equal(t, []any{"instance", "a"}, IDFields([]any{"x", 3, req{Instance: "a"}}))
	assert.Nil(t, IDFields([]any{struct{ Instance int }{3}, (*req)(nil), nil}))
}

func TestSetKVReplaces(t *testing.T) {
	assert.Equal(t, []any{"a", 1, "b", 3, "c", 4}, setKV([]any{"a", 1, "b", 2}, "b", 3, "c", 4))
}
