package workflows_test

import (
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/workers"
)

// TestReplayRecordedHistories replays the histories in testdata/histories,
// recorded from real runs of every workflow against a Temporal server
// (`make histories`), against today's workflow code. A change to a
// workflow's command sequence that is not behind workflow.GetVersion makes
// the replay fail with a nondeterminism error, as it would fail the
// workflows running in production when the new code is deployed.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in testdata/histories: run `make histories`")
	types := map[string]int{}
	for _, f := range files {
		typ, _, _ := strings.Cut(filepath.Base(f), "-")
		types[typ]++
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			workers.RegisterWorkflows(r)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
	// Every registered workflow type has at least one recorded history.
	reg := &registered{}
	workers.RegisterWorkflows(reg)
	require.Subset(t, reg.names, []string{"BackupWorkflow", "RestoreWorkflow", "VerifyWorkflow", "RetentionWorkflow", "BinlogArchiveWorkflow"})
	for _, typ := range reg.names {
		require.NotZero(t, types[typ], "no recorded history of %s in testdata/histories: add an end-to-end test that runs it to HISTORY_TESTS and run `make histories`", typ)
	}
}

// registered collects the names of the workflows registered on it.
type registered struct{ names []string }

func (r *registered) RegisterWorkflow(w any) {
	name := runtime.FuncForPC(reflect.ValueOf(w).Pointer()).Name()
	r.names = append(r.names, name[strings.LastIndex(name, ".")+1:])
}

func (r *registered) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	if o.Name == "" {
		r.RegisterWorkflow(w)
		return
	}
	r.names = append(r.names, o.Name)
}

func (r *registered) RegisterDynamicWorkflow(any, workflow.DynamicRegisterOptions) {}
