package tests

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"

	"github.com/strata-backup/strata/internal/tracing"
	"github.com/strata-backup/strata/workflows"
)

// withoutWorkers makes newStack start neither the in-process worker nor
// the agent.
func withoutWorkers() stackOption { return stackOptionFunc(func(c *stackSetup) { c.noWorkers = true }) }

// withClientInterceptors sets interceptors on the stack's client.
func withClientInterceptors(is ...interceptor.ClientInterceptor) stackOption {
	return stackOptionFunc(func(c *stackSetup) { c.interceptors = append(c.interceptors, is...) })
}

// startLogged runs the strata binary with the stack's config, its stderr
// (the logs) to a file in the test's temp dir, and returns the file's path.
func (s *stack) startLogged(name string, args ...string) string {
	s.t.Helper()
	path := filepath.Join(s.t.TempDir(), name+".log")
	f, err := os.Create(path)
	require.NoError(s.t, err)
	cmd := exec.Command(strataBinary(s.t), append(args, "--config", s.cfgPath, "--log-level", "info")...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(s.t, cmd.Start())
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = f.Close()
	})
	return path
}

// jsonLines decodes every line of a log file; a line that is not a JSON
// object fails the test.
func jsonLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "%s: a line that is not JSON: %s", filepath.Base(path), sc.Text())
		lines = append(lines, m)
	}
	require.NoError(t, sc.Err())
	return lines
}

// The worker and the agent, as the processes an operator runs, log JSON by
// default, and one backup can be followed by its workflow id across both:
// every line of it carries the workflow and run ids, the instance and the
// backup id, under one spelling of the keys.
func TestLogsFollowOneBackup(t *testing.T) {
	s := newStack(t, withoutWorkers())
	s.seeded(2 << 20)
	workerLog := s.startLogged("worker", "worker")
	agentLog := s.startLogged("agent", "agent", "--host", "h1")

	// No backup id in the request: the workflow chooses it, and its lines
	// carry the one it chose.
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "backup/db1/logs", TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1"})
	require.NoError(t, err)
	var res workflows.BackupResult
	require.NoError(t, run.Get(s.ctx, &res))
	require.NotEmpty(t, res.BackupID)

	for name, path := range map[string]string{"worker": workerLog, "agent": agentLog} {
		lines := jsonLines(t, path)
		require.NotEmpty(t, lines, "%s logged nothing", name)
		var ours []map[string]any
		for _, l := range lines {
			for _, k := range []string{"WorkflowID", "RunID", "WorkflowType", "ActivityType", "TaskQueue"} {
				assert.NotContains(t, l, k, "%s: the SDK's spelling of a key: %v", name, l)
			}
			if l["workflow_id"] == run.GetID() {
				ours = append(ours, l)
			}
		}
		require.NotEmpty(t, ours, "%s: no line of workflow %s", name, run.GetID())
		for _, l := range ours {
			assert.Equal(t, run.GetRunID(), l["run_id"], "%s: %v", name, l)
			assert.Equal(t, "db1", l["instance"], "%s: %v", name, l)
			assert.Equal(t, res.BackupID, l["backup_id"], "%s: %v", name, l)
		}
		t.Logf("%s: %d of %d lines are of the backup's workflow", name, len(ours), len(lines))
	}
	var complete bool
	for _, l := range jsonLines(t, agentLog) {
		complete = complete || (l["msg"] == "backup complete" && l["workflow_id"] == run.GetID() && l["activity_type"] == "Backup")
	}
	assert.True(t, complete, "the agent's line of the finished backup is found by workflow id")
}

// spanIndex indexes finished spans by span id.
type spanIndex map[trace.SpanID]tracetest.SpanStub

func (ix spanIndex) named(t *testing.T, name string, trace trace.TraceID) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range ix {
		if s.Name == name && s.SpanContext.TraceID() == trace {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "one span %s in trace %s", name, trace)
	return found[0]
}

// ancestors returns the names of a span's ancestors, nearest first.
func (ix spanIndex) ancestors(s tracetest.SpanStub) []string {
	var names []string
	for p, ok := ix[s.Parent.SpanID()]; ok; p, ok = ix[p.Parent.SpanID()] {
		names = append(names, p.Name)
	}
	return names
}

// A trace of one backup holds the client's start, the workflow, its
// activities and the data path's phases under the backup activity; a trace
// of one restore holds download, extract, prepare and move back under the
// restore activity.
func TestTraceOfOneBackupShowsDataPathPhases(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp) // the phase spans' provider, as tracing.Setup installs it
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	ti, err := tracing.Interceptor(tp.Tracer("strata-test"))
	require.NoError(t, err)
	s := newStack(t, withClientInterceptors(ti))
	s.seeded(2 << 20)

	b := s.backup("t1", "full")
	target := filepath.Join(t.TempDir(), "restored")
	var rr workflows.RestoreResult
	restoreRun, err := s.run("restore/h1:"+target, workflows.RestoreWorkflowName,
		workflows.RestoreRequest{Instance: "db1", BackupID: "t1", TargetDir: target}, &rr)
	require.NoError(t, err)

	ix := spanIndex{}
	for _, sp := range exp.GetSpans() {
		ix[sp.SpanContext.SpanID()] = sp
	}

	var backupTrace trace.TraceID
	for _, sp := range ix {
		if sp.Name == "StartWorkflow:"+workflows.BackupWorkflowName {
			backupTrace = sp.SpanContext.TraceID()
		}
	}
	require.True(t, backupTrace.IsValid(), "the client's start of the backup is traced")
	wf := ix.named(t, "RunWorkflow:"+workflows.BackupWorkflowName, backupTrace)
	act := ix.named(t, "RunActivity:Backup", backupTrace)
	assert.Contains(t, ix.ancestors(act), wf.Name, "the backup activity is under its workflow")
	assert.Equal(t, "StartWorkflow:"+workflows.BackupWorkflowName, ix.ancestors(wf)[0])
	for _, phase := range []string{tracing.SpanStream, tracing.SpanCompress, tracing.SpanUpload} {
		sp := ix.named(t, phase, backupTrace)
		assert.Equal(t, act.SpanContext.SpanID(), sp.Parent.SpanID(), "%s is a child of the backup activity's span", phase)
		a := attrs(sp)
		assert.Equal(t, "db1", a[tracing.AttrInstance], phase)
		assert.Equal(t, b.BackupID, a[tracing.AttrBackupID], phase)
		assert.Positive(t, a[tracing.AttrBytes], phase)
	}
	assert.Equal(t, b.RawSize, attrs(ix.named(t, tracing.SpanStream, backupTrace))[tracing.AttrBytes])

	var restoreTrace trace.TraceID
	for _, sp := range ix {
		if sp.Name == "RunWorkflow:"+workflows.RestoreWorkflowName {
			restoreTrace = sp.SpanContext.TraceID()
		}
	}
	require.True(t, restoreTrace.IsValid())
	assert.NotEqual(t, backupTrace, restoreTrace, "the restore is a trace of its own")
	ract := ix.named(t, "RunActivity:RestoreBackup", restoreTrace)
	for _, phase := range []string{tracing.SpanDownload, tracing.SpanExtract, tracing.SpanPrepare, tracing.SpanMoveBack} {
		sp := ix.named(t, phase, restoreTrace)
		assert.Equal(t, ract.SpanContext.SpanID(), sp.Parent.SpanID(), "%s is a child of the restore activity's span", phase)
		a := attrs(sp)
		assert.Equal(t, "db1", a[tracing.AttrInstance], phase)
		assert.Equal(t, "t1", a[tracing.AttrBackupID], phase)
		assert.Positive(t, a[tracing.AttrBytes], phase)
	}
	for _, sp := range ix {
		if tid := sp.SpanContext.TraceID(); tid == backupTrace || tid == restoreTrace {
			assert.NotEqual(t, "Error", sp.Status.Code.String(), "%s failed: %s", sp.Name, sp.Status.Description)
		}
	}
	t.Logf("%d spans; restore %s", len(ix), restoreRun.GetID())
}

// attrs returns a span's attributes as plain values.
func attrs(s tracetest.SpanStub) map[string]any {
	m := map[string]any{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}
