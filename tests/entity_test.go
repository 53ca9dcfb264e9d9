package tests

import (
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// withConfig appends yaml to the stack's config file.
func withConfig(yaml string) stackOption {
	return stackOptionFunc(func(c *stackSetup) { c.config += yaml })
}

// history returns every event of the workflow's run (its latest run when
// runID is empty).
func (s *stack) history(id, runID string) []*historypb.HistoryEvent {
	s.t.Helper()
	var evs []*historypb.HistoryEvent
	it := s.client.GetWorkflowHistory(s.ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(s.t, err)
		evs = append(evs, ev)
	}
	return evs
}

// agentBackupSpan is when the agent's Backup activity of a backup workflow
// was scheduled (after its fleet permit) and when it completed, from the
// workflow's history.
func (s *stack) agentBackupSpan(id string) (from, to time.Time) {
	s.t.Helper()
	var sched int64
	for _, ev := range s.history(id, "") {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.ActivityType.GetName() == "Backup" {
			sched, from = ev.EventId, ev.EventTime.AsTime()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && a.ScheduledEventId == sched {
			to = ev.EventTime.AsTime()
		}
	}
	require.False(s.t, from.IsZero() || to.IsZero(), "no completed Backup activity in the history of %s", id)
	return from, to
}

// peakOverlap is the most spans open at one instant.
func peakOverlap(spans [][2]time.Time) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var es []edge
	for _, sp := range spans {
		es = append(es, edge{sp[0], +1}, edge{sp[1], -1})
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].at.Equal(es[j].at) {
			return es[i].delta < es[j].delta // an end before a start at the same instant
		}
		return es[i].at.Before(es[j].at)
	})
	n, peak := 0, 0
	for _, e := range es {
		n += e.delta
		peak = max(peak, n)
	}
	return peak
}

// TestEntitySerialisesUpdatesTakesSignalsAndRejectsBadRequests: two
// concurrent Update requests for db1 are both answered (one runs, the
// other is queued behind it) and their backups never overlap; a Signal
// from a test client starts a backup; invalid requests are rejected by the
// update validator and leave no trace in the entity's history.
func TestEntitySerialisesUpdatesTakesSignalsAndRejectsBadRequests(t *testing.T) {
	s := newStack(t)
	s.seeded(4 << 20)
	q := s.cfg.Temporal.TaskQueue

	// Two callers at once.
	var wg sync.WaitGroup
	answers := make([]workflows.BackupAccepted, 2)
	errs := make([]error, 2)
	for i, id := range []string{"u1", "u2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = workers.RequestBackup(s.ctx, s.client, q, "db1",
				workflows.BackupAsk{BackupID: id, RequestedBy: "test", Reason: fmt.Sprintf("caller %d", i)})
		}()
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	for i, id := range []string{"u1", "u2"} {
		assert.Equal(t, id, answers[i].BackupID)
		assert.Equal(t, workflows.BackupWorkflowID("db1", id), answers[i].WorkflowID)
		assert.False(t, answers[i].Joined)
	}
	// One was accepted to run now, the other queued behind it.
	assert.ElementsMatch(t, []int{0, 1}, []int{answers[0].Position, answers[1].Position})
	first, second := answers[0], answers[1]
	if first.Position == 1 {
		first, second = second, first
	}

	// Invalid requests, while the entity runs: rejected by the validator.
	for ask, want := range map[workflows.BackupAsk]string{
		{BackupID: "bad/id"}: `backup id "bad/id" is invalid`,
		{Type: "nightly"}:    `backup type "nightly" is not one of full`,
		{BackupID: second.BackupID, Type: "incremental"}: "as a full backup, not incremental",
	} {
		_, err := workers.RequestBackup(s.ctx, s.client, q, "db1", ask)
		require.Error(t, err, "%+v", ask)
		assert.Contains(t, err.Error(), want)
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "%v", err)
		assert.Equal(t, activities.ErrInvalidRequest, ae.Type())
	}

	var res1, res2 workflows.BackupResult
	require.NoError(t, workers.WaitBackup(s.ctx, s.client, first, time.Second, &res1))
	require.NoError(t, workers.WaitBackup(s.ctx, s.client, second, time.Second, &res2))
	assert.Equal(t, first.BackupID, res1.BackupID)
	assert.Equal(t, second.BackupID, res2.BackupID)
	// One at a time: the queued backup's workflow started after the first closed.
	d1, err := s.client.DescribeWorkflowExecution(s.ctx, first.WorkflowID, "")
	require.NoError(t, err)
	d2, err := s.client.DescribeWorkflowExecution(s.ctx, second.WorkflowID, "")
	require.NoError(t, err)
	assert.False(t, d2.WorkflowExecutionInfo.StartTime.AsTime().Before(d1.WorkflowExecutionInfo.CloseTime.AsTime()),
		"second backup started %s, before the first closed %s", d2.WorkflowExecutionInfo.StartTime.AsTime(), d1.WorkflowExecutionInfo.CloseTime.AsTime())
	a1, b1 := s.agentBackupSpan(first.WorkflowID)
	a2, _ := s.agentBackupSpan(second.WorkflowID)
	assert.True(t, a2.After(b1), "agent backups overlap: %s-%s and from %s", a1, b1, a2)

	// A Signal from a test client starts a backup.
	require.NoError(t, workers.SignalBackup(s.ctx, s.client, q, "db1", workflows.BackupAsk{BackupID: "s1", Type: "incremental", RequestedBy: "signal"}))
	var res3 workflows.BackupResult
	require.NoError(t, workers.WaitBackup(s.ctx, s.client, workflows.BackupAccepted{BackupID: "s1", WorkflowID: workflows.BackupWorkflowID("db1", "s1")}, time.Second, &res3))
	assert.Equal(t, "incremental", res3.Type)
	assert.Equal(t, second.BackupID, res3.ParentID)
	// An invalid Signal is dropped and shown as rejected.
	require.NoError(t, workers.SignalBackup(s.ctx, s.client, q, "db1", workflows.BackupAsk{BackupID: "also/bad"}))
	var st *workflows.InstanceStatus
	for st == nil || len(st.Recent) < 4 {
		time.Sleep(100 * time.Millisecond)
		st, err = workers.InstanceStatus(s.ctx, s.client, "db1")
		require.NoError(t, err)
	}
	require.Nil(t, st.Running)
	require.Empty(t, st.Queue)
	var states []string
	for _, r := range st.Recent {
		states = append(states, r.BackupID+":"+r.State)
	}
	assert.Equal(t, []string{first.BackupID + ":succeeded", second.BackupID + ":succeeded", "s1:succeeded", "also/bad:rejected"}, states)

	// The entity's history holds the two accepted updates and none of the
	// rejected ones.
	accepted := 0
	for _, ev := range s.history(workflows.InstanceWorkflowID("db1"), "") {
		if a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); a != nil {
			accepted++
			in := fmt.Sprint(a.AcceptedRequest.GetInput().GetArgs())
			assert.NotContains(t, in, "bad/id")
			assert.NotContains(t, in, "nightly")
		}
		if ev.GetWorkflowExecutionUpdateRejectedEventAttributes() != nil {
			t.Errorf("a rejected update entered the history: %v", ev)
		}
	}
	assert.Equal(t, 2, accepted)
}

// TestFleetLimitBoundsConcurrentBackups: with fleet.max_concurrent_backups
// 2 and the agent allowed 8, five instances asked at once never run more
// than two backups at a time, as their workflow histories show; the
// waiting ones are visible in the limiter's state and their entities'
// status, and every permit is given back.
func TestFleetLimitBoundsConcurrentBackups(t *testing.T) {
	srv2 := testdb.ForTest(t, testdb.Options{ServerID: 2})
	t.Setenv("STRATA_E2E_PASSWORD2", srv2.Password)
	extra := ""
	for i := 2; i <= 5; i++ {
		port, dir, pw := "%[1]d", "%[2]s", "STRATA_E2E_PASSWORD"
		if i%2 == 0 {
			port, dir, pw = fmt.Sprint(srv2.Port), srv2.Datadir, "STRATA_E2E_PASSWORD2"
		}
		extra += fmt.Sprintf("  - id: db%d\n    host: h1\n    connect:\n      address: 127.0.0.1:%s\n      user: root\n      password_env: %s\n    datadir: %s\n", i, port, pw, dir)
	}
	s := newStack(t, extraInstance(extra), withConfig("fleet:\n  max_concurrent_backups: 2\nagent:\n  max_concurrent: 8\n  bandwidth_limit: 4MiB\n"))
	require.Equal(t, 8, s.cfg.Agent.MaxConcurrentHeavy)
	s.seeded(8 << 20)
	q := s.cfg.Temporal.TaskQueue

	var wg sync.WaitGroup
	acc := make([]workflows.BackupAccepted, 5)
	errs := make([]error, 5)
	for i := range acc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc[i], errs[i] = workers.RequestBackup(s.ctx, s.client, q, fmt.Sprintf("db%d", i+1), workflows.BackupAsk{BackupID: "f1"})
		}()
	}
	wg.Wait()
	for i := range acc {
		require.NoError(t, errs[i])
		require.Equal(t, 0, acc[i].Position) // each entity runs it at once: only the fleet limit holds it
	}

	// While they run: two hold a permit, the others wait, and a waiting
	// backup's entity says so.
	limiter := workflows.LimiterWorkflowID("fleet", "backup")
	sawWaiting := false
	for done := 0; done < len(acc) && !sawWaiting; {
		time.Sleep(50 * time.Millisecond)
		states, err := workers.LimiterStatus(s.ctx, s.client, s.cfg)
		require.NoError(t, err)
		require.Len(t, states, 1)
		ls := states[0]
		require.Equal(t, limiter, ls.ID)
		require.LessOrEqual(t, len(ls.Holders), 2)
		if len(ls.Waiters) > 0 {
			st, err := workers.InstanceStatus(s.ctx, s.client, ls.Waiters[0].Instance)
			require.NoError(t, err)
			if st.Running != nil && st.Running.State == workflows.StateWaitingForSlot {
				sawWaiting = true
			}
		}
		done = 0
		for _, a := range acc {
			d, err := s.client.DescribeWorkflowExecution(s.ctx, a.WorkflowID, "")
			if err == nil && d.WorkflowExecutionInfo.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				done++
			}
		}
	}
	assert.True(t, sawWaiting, "no entity was seen waiting for a slot")

	var spans [][2]time.Time
	for _, a := range acc {
		var res workflows.BackupResult
		require.NoError(t, workers.WaitBackup(s.ctx, s.client, a, time.Second, &res))
		from, to := s.agentBackupSpan(a.WorkflowID)
		spans = append(spans, [2]time.Time{from, to})
	}
	peak := peakOverlap(spans)
	assert.LessOrEqual(t, peak, 2, "more than 2 backups ran at once: %v", spans)
	assert.Equal(t, 2, peak, "the limit of 2 was never used: %v", spans)

	// Every permit was given back.
	for {
		states, err := workers.LimiterStatus(s.ctx, s.client, s.cfg)
		require.NoError(t, err)
		if len(states[0].Holders)+len(states[0].Waiters) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var ids []string
	for _, sp := range spans {
		ids = append(ids, sp[0].Format(time.RFC3339Nano)+"-"+sp[1].Format(time.RFC3339Nano))
	}
	t.Logf("agent backup spans: %s", strings.Join(ids, ", "))
}

// TestFleetPermitOfATerminatedBackupIsTakenBack: with a fleet limit of 1,
// a backup terminated while it holds the permit cannot release it; the
// limiter finds it closed and grants the permit to the backup waiting.
func TestFleetPermitOfATerminatedBackupIsTakenBack(t *testing.T) {
	extra := "  - id: db2\n    host: h1\n    connect:\n      address: 127.0.0.1:%[1]d\n      user: root\n      password_env: STRATA_E2E_PASSWORD\n    datadir: %[2]s\n"
	s := newStack(t, extraInstance(extra), withConfig("fleet:\n  max_concurrent_backups: 1\nagent:\n  max_concurrent: 4\n  bandwidth_limit: 128KiB\n"))
	s.seeded(4 << 20)
	q := s.cfg.Temporal.TaskQueue
	limiter := func() activities.LimiterState {
		states, err := workers.LimiterStatus(s.ctx, s.client, s.cfg)
		require.NoError(t, err)
		return states[0]
	}

	a1, err := workers.RequestBackup(s.ctx, s.client, q, "db1", workflows.BackupAsk{BackupID: "t1"})
	require.NoError(t, err)
	for ls := limiter(); len(ls.Holders) == 0; ls = limiter() {
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, a1.WorkflowID, limiter().Holders[0].WorkflowID)
	a2, err := workers.RequestBackup(s.ctx, s.client, q, "db2", workflows.BackupAsk{BackupID: "t2"})
	require.NoError(t, err)
	for ls := limiter(); len(ls.Waiters) == 0; ls = limiter() {
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, a2.WorkflowID, limiter().Waiters[0].WorkflowID)

	require.NoError(t, s.client.TerminateWorkflow(s.ctx, a1.WorkflowID, "", "test: a holder that vanishes"))
	var res workflows.BackupResult
	require.NoError(t, workers.WaitBackup(s.ctx, s.client, a2, time.Second, &res))
	assert.Equal(t, "t2", res.BackupID)
	for ls := limiter(); len(ls.Holders)+len(ls.Waiters) > 0; ls = limiter() {
		time.Sleep(100 * time.Millisecond)
	}
	// db1's entity saw its backup fail (terminated).
	st, err := workers.InstanceStatus(s.ctx, s.client, "db1")
	require.NoError(t, err)
	require.Len(t, st.Recent, 1)
	assert.Equal(t, workflows.StateFailed, st.Recent[0].State)
	assert.Contains(t, st.Recent[0].Error, "terminated")
}

// TestTemporalCLICommandsOfTheDocs runs the `temporal` commands that
// docs/architecture.md gives for other services against the entity:
// update-with-start, update, signal, signal-with-start and the status
// query; each asked backup completes, and a bad request is refused with
// the validator's reason.
func TestTemporalCLICommandsOfTheDocs(t *testing.T) {
	s := newStack(t)
	s.seeded(2 << 20)
	addr := s.dev.FrontendHostPort()
	tcli := func(args ...string) (string, error) {
		out, err := exec.CommandContext(s.ctx, temporalBinary(t), append(args, "--address", addr)...).CombinedOutput()
		return string(out), err
	}
	out, err := tcli("workflow", "execute-update-with-start", "--workflow-id", "instance/db1", "--type", "InstanceWorkflow",
		"--task-queue", "strata", "--id-conflict-policy", "UseExisting", "--input", `{"instance":"db1"}`,
		"--search-attribute", `StrataInstance="db1"`, "--search-attribute", `StrataKind="instance"`,
		"--update-name", "request-backup", "--update-input", `{"type":"full","backup_id":"cli1","requested_by":"schema-migrator","reason":"before migration 0042"}`)
	require.NoError(t, err, out)
	assert.Contains(t, out, "backup/db1/cli1")

	out, err = tcli("workflow", "update", "execute", "--workflow-id", "instance/db1", "--name", "request-backup", "--input", `{"type":"nightly"}`)
	require.Error(t, err, out)
	assert.Contains(t, out, "nightly")
	assert.Contains(t, out, "is not one of full, incremental, differential")
	out, err = tcli("workflow", "update", "execute", "--workflow-id", "instance/db1", "--name", "request-backup",
		"--input", `{"type":"incremental","auto_full":true,"backup_id":"cli2"}`)
	require.NoError(t, err, out)
	assert.Contains(t, out, "backup/db1/cli2")

	out, err = tcli("workflow", "signal", "--workflow-id", "instance/db1", "--name", "request-backup", "--input", `{"type":"full","backup_id":"cli3"}`)
	require.NoError(t, err, out)
	out, err = tcli("workflow", "signal-with-start", "--workflow-id", "instance/db1", "--type", "InstanceWorkflow",
		"--task-queue", "strata", "--input", `{"instance":"db1"}`,
		"--signal-name", "request-backup", "--signal-input", `{"type":"full","backup_id":"pre-0042"}`)
	require.NoError(t, err, out)

	for _, id := range []string{"cli1", "cli2", "cli3", "pre-0042"} {
		var res workflows.BackupResult
		require.NoError(t, workers.WaitBackup(s.ctx, s.client, workflows.BackupAccepted{BackupID: id, WorkflowID: workflows.BackupWorkflowID("db1", id)}, time.Second, &res), id)
		assert.Equal(t, id, res.BackupID)
	}
	out, err = tcli("workflow", "query", "--workflow-id", "instance/db1", "--type", "status")
	require.NoError(t, err, out)
	for _, id := range []string{"cli1", "cli2", "cli3", "pre-0042"} {
		assert.Contains(t, out, id)
	}
	assert.Contains(t, out, "schema-migrator")
}
