package tests

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/strata-backup/strata/workflows"
)

// cliSplit runs the strata binary with the stack's config and returns its
// stdout and stderr apart: --json output must be on stdout alone.
func (s *stack) cliSplit(args ...string) (stdout, stderr string, err error) {
	s.t.Helper()
	cmd := exec.Command(strataBinary(s.t), append(args, "--config", s.cfgPath)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// searchAttr decodes a Keyword search attribute of a listed workflow.
func searchAttr(t *testing.T, fields map[string]*commonpb.Payload, name string) string {
	t.Helper()
	p, ok := fields[name]
	if !ok {
		return ""
	}
	var v string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(p, &v))
	return v
}

// The CLI's workflows carry the search attributes, so that `temporal
// workflow list --query "StrataInstance='db1' AND StrataKind='backup'"`
// finds a backup with its id; `strata status`, `ls --json` and `--wait`'s
// progress off a terminal show what happened.
func TestCLISearchAttributesStatusAndJSON(t *testing.T) {
	s := newStack(t)
	s.seeded(4 << 20)

	out, errOut, err := s.cliSplit("backup", "db1", "--id", "b1", "--wait")
	require.NoError(t, err, errOut)
	assert.Contains(t, out, "backup b1 of db1 complete")
	// stdout and stderr are pipes here: plain progress lines, no redraws.
	assert.NotContains(t, out+errOut, "\r")
	assert.NotContains(t, out+errOut, "\x1b")

	// The same query as `temporal workflow list --query ...`.
	byID := func(query string) map[string]map[string]string {
		resp, err := s.client.ListWorkflow(s.ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: s.cfg.Temporal.Namespace, Query: query})
		require.NoError(t, err, query)
		got := map[string]map[string]string{}
		for _, e := range resp.GetExecutions() {
			sa := map[string]string{}
			for _, n := range workflows.SearchAttributeNames {
				sa[n] = searchAttr(t, e.GetSearchAttributes().GetIndexedFields(), n)
			}
			got[e.GetExecution().GetWorkflowId()] = sa
		}
		return got
	}
	var found map[string]map[string]string
	require.Eventually(t, func() bool {
		found = byID("StrataInstance='db1' AND StrataKind='backup'")
		return len(found) > 0
	}, time.Minute, 200*time.Millisecond, "visibility lists the backup by its search attributes")
	require.Contains(t, found, workflows.BackupWorkflowID("db1", "b1"))
	assert.Equal(t, map[string]string{"StrataInstance": "db1", "StrataKind": "backup", "StrataBackupID": "b1", "StrataHost": "h1"},
		found[workflows.BackupWorkflowID("db1", "b1")])
	assert.Empty(t, byID("StrataInstance='db2'"), "another instance's query finds nothing")

	// Verify waits too; its workflow is kind verify.
	out, errOut, err = s.cliSplit("verify", "db1")
	require.NoError(t, err, out+errOut)
	// Archiving runs until stopped: status lists it as running.
	_, errOut, err = s.cliSplit("archive", "start", "db1")
	require.NoError(t, err, errOut)
	t.Cleanup(func() { _, _, _ = s.cliSplit("archive", "stop", "db1") })

	type statusJSON struct {
		Instances []struct {
			Instance string `json:"instance"`
			Host     string `json:"host"`
			LastFull *struct {
				BackupID string `json:"backup_id"`
				Type     string `json:"type"`
			} `json:"last_full"`
			LastIncremental *struct{} `json:"last_incremental"`
			LastVerify      *struct {
				WorkflowID string `json:"workflow_id"`
				Status     string `json:"status"`
			} `json:"last_verify"`
			Archive struct {
				State string `json:"state"`
			} `json:"archive"`
			Schedules []json.RawMessage `json:"schedules"`
			Running   []struct {
				WorkflowID string `json:"workflow_id"`
				Kind       string `json:"kind"`
			} `json:"running"`
			Queued []json.RawMessage `json:"queued"`
			Errors []string          `json:"errors"`
		} `json:"instances"`
	}
	var st statusJSON
	require.Eventually(t, func() bool {
		out, errOut, err = s.cliSplit("status", "db1", "--json")
		require.NoError(t, err, errOut)
		st = statusJSON{}
		require.NoError(t, json.Unmarshal([]byte(out), &st), "stdout is JSON alone: %s", out)
		require.Len(t, st.Instances, 1)
		in := st.Instances[0]
		return in.LastVerify != nil && len(in.Running) == 1 && in.Archive.State == "running"
	}, time.Minute, 500*time.Millisecond, "status sees the verify closed and the archiver running: %s", out)
	in := st.Instances[0]
	assert.Equal(t, "db1", in.Instance)
	assert.Equal(t, "h1", in.Host)
	require.NotNil(t, in.LastFull)
	assert.Equal(t, "b1", in.LastFull.BackupID)
	assert.Equal(t, "full", in.LastFull.Type)
	assert.Nil(t, in.LastIncremental)
	assert.Equal(t, "completed", in.LastVerify.Status)
	assert.True(t, strings.HasPrefix(in.LastVerify.WorkflowID, "verify/db1/"), in.LastVerify.WorkflowID)
	assert.Equal(t, workflows.ArchiveWorkflowID("db1"), in.Running[0].WorkflowID)
	assert.Equal(t, "archive", in.Running[0].Kind)
	assert.Empty(t, in.Schedules, "no schedules were created")
	assert.Empty(t, in.Queued)
	assert.Empty(t, in.Errors)

	out, errOut, err = s.cliSplit("status")
	require.NoError(t, err, errOut)
	for _, want := range []string{"db1 (host h1)", "last full         full b1", "last verify       completed", "archive           running",
		"next runs         no schedules", "running           archive/db1 (BinlogArchiveWorkflow"} {
		assert.Contains(t, out, want)
	}

	out, errOut, err = s.cliSplit("ls", "db1", "--json")
	require.NoError(t, err, errOut)
	var ls struct {
		Backups []struct {
			BackupID string   `json:"backup_id"`
			Status   string   `json:"status"`
			Chain    []string `json:"chain"`
		} `json:"backups"`
		Partial []string `json:"partial_uploads"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &ls), out)
	require.Len(t, ls.Backups, 1)
	assert.Equal(t, "b1", ls.Backups[0].BackupID)
	assert.Equal(t, "ok", ls.Backups[0].Status)
	assert.Equal(t, []string{"b1"}, ls.Backups[0].Chain)

	// A second backup with --json: its result alone on stdout.
	out, errOut, err = s.cliSplit("backup", "db1", "--id", "b2", "--type", "incremental", "--wait", "--json")
	require.NoError(t, err, errOut)
	var res workflows.BackupResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	assert.Equal(t, "b2", res.BackupID)
	assert.Equal(t, "b1", res.ParentID)
}
