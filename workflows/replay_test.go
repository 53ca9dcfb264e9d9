package workflows_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

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
	// Every workflow type has at least one recorded history.
	for _, typ := range []string{"BackupWorkflow", "RestoreWorkflow", "VerifyWorkflow", "RetentionWorkflow", "BinlogArchiveWorkflow"} {
		require.NotZero(t, types[typ], "no recorded history of %s in testdata/histories", typ)
	}
}
