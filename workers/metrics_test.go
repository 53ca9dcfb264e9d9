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
	runOn(t, name, "", fail)
}

// runOn runs a workflow of type name carrying the instance search
// attribute (none when instance is "").
func runOn(t *testing.T, name, instance string, fail bool) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	if instance != "" {
		require.NoError(t, env.SetTypedSearchAttributesOnStart(workflows.SearchAttributes(instance, "backup", "", "")))
	}
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

// TestCompletionNamesTheInstance: the refresh after a completed workflow
// knows its instance, and whether it deleted from the catalog.
func TestCompletionNamesTheInstance(t *testing.T) {
	drain()
	metrics.TakeCatalogChanges()
	runOn(t, workflows.BackupWorkflowName, "db7", false)
	runOn(t, workflows.RetentionWorkflowName, "db8", false)
	runOn(t, workflows.BackupWorkflowName, "db9", true)
	runWith(t, workflows.DrillWorkflowName, false)
	assert.True(t, drain())
	assert.ElementsMatch(t, []metrics.CatalogChange{{Instance: "db7"}, {Instance: "db8", Deleted: true}, {Instance: ""}},
		metrics.TakeCatalogChanges())
	assert.Empty(t, metrics.TakeCatalogChanges())
}

func TestLimitLabel(t *testing.T) {
	assert.Equal(t, "backups", LimitLabel(activities.Limit{Scope: "fleet", Name: activities.LimitKindBackup}))
	assert.Equal(t, "restores", LimitLabel(activities.Limit{Scope: "fleet", Name: activities.LimitKindRestore}))
	assert.Equal(t, "storage", LimitLabel(activities.Limit{Scope: "storage", Name: "gs://bucket/prefix"}))
}
