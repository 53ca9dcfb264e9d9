package workers

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/workflows"
)

// drain empties the completions channel and reports whether it held one.
func drain() bool {
	select {
	case <-metrics.BackupCompletions():
		return true
	default:
		return false
	}
}

func runWith(t *testing.T, name string, fail bool) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&completions{}}})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		if fail {
			return errors.New("backup failed")
		}
		return nil
	}, workflow.RegisterOptions{Name: name})
	env.ExecuteWorkflow(name)
	require.True(t, env.IsWorkflowCompleted())
}

func TestCompletedBackupRefreshesMetrics(t *testing.T) {
	drain()
	runWith(t, workflows.BackupWorkflowName, false)
	assert.True(t, drain(), "a completed backup workflow asks for a refresh")
	runWith(t, workflows.BackupWorkflowName, true)
	assert.False(t, drain(), "a failed backup changes no catalog gauge")
	runWith(t, workflows.RetentionWorkflowName, false)
	assert.True(t, drain(), "a completed prune asks for a refresh")
	runWith(t, workflows.RestoreWorkflowName, false)
	assert.False(t, drain(), "a restore changes no catalog gauge")
}

func TestLimitLabel(t *testing.T) {
	assert.Equal(t, "backups", LimitLabel(activities.Limit{Scope: "fleet", Name: activities.LimitKindBackup}))
	assert.Equal(t, "restores", LimitLabel(activities.Limit{Scope: "fleet", Name: activities.LimitKindRestore}))
	assert.Equal(t, "storage", LimitLabel(activities.Limit{Scope: "storage", Name: "gs://bucket/prefix"}))
}
