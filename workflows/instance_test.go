package workflows

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// entityEnv runs InstanceWorkflow of db1 with a BackupWorkflow child that
// takes an hour (of test time) and records how many run at once.
type entityEnv struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	// started are the children's requests in start order; running counts
	// children running now, peak the most at once.
	started       []BackupRequest
	running, peak int
	fail          map[string]bool // backup ids whose child fails
	updates       int
}

func newEntityEnv(t *testing.T) *entityEnv {
	var ts testsuite.WorkflowTestSuite
	e := &entityEnv{t: t, env: ts.NewTestWorkflowEnvironment(), fail: map[string]bool{}}
	e.env.SetStartTime(time.Date(2026, 11, 24, 8, 45, 0, 0, time.UTC))
	e.env.RegisterWorkflowWithOptions(BackupWorkflow, workflow.RegisterOptions{Name: BackupWorkflowName})
	e.env.OnWorkflow(BackupWorkflowName, mock.Anything, mock.Anything).Return(
		func(ctx workflow.Context, req BackupRequest) (*BackupResult, error) {
			e.started = append(e.started, req)
			e.running++
			e.peak = max(e.peak, e.running)
			defer func() { e.running-- }()
			if err := workflow.Sleep(ctx, time.Hour); err != nil {
				return nil, err
			}
			if e.fail[req.BackupID] {
				return nil, temporal.NewNonRetryableApplicationError("boom", "Test", nil)
			}
			return &BackupResult{}, nil
		})
	return e
}

// update sends a request-backup Update at test time at and records its
// outcome in out.
func (e *entityEnv) update(at time.Duration, ask BackupAsk, out *updateOutcome) {
	e.updates++
	id := fmt.Sprintf("u%d", e.updates)
	e.env.RegisterDelayedCallback(func() {
		e.env.UpdateWorkflow(RequestBackupUpdate, id, &testsuite.TestUpdateCallback{
			OnAccept: func() { out.accepted = true },
			OnReject: func(err error) { out.rejected = err },
			OnComplete: func(v any, err error) {
				out.completed, out.err = true, err
				if a, ok := v.(BackupAccepted); ok {
					out.answer = a
				}
			},
		}, ask)
	}, at)
}

type updateOutcome struct {
	accepted, completed bool
	rejected, err       error
	answer              BackupAccepted
}

func (e *entityEnv) status() InstanceStatus {
	v, err := e.env.QueryWorkflow(InstanceStatusQuery)
	require.NoError(e.t, err)
	var st InstanceStatus
	require.NoError(e.t, v.Get(&st))
	return st
}

// run runs the entity until end, then makes it continue as new, and
// returns the request it continued with.
func (e *entityEnv) run(end time.Duration, req InstanceRequest) InstanceRequest {
	e.env.RegisterDelayedCallback(func() { e.env.SetContinueAsNewSuggested(true) }, end)
	e.env.ExecuteWorkflow(InstanceWorkflow, req)
	require.True(e.t, e.env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.True(e.t, errors.As(e.env.GetWorkflowError(), &can), "want continue-as-new, got %v", e.env.GetWorkflowError())
	require.Equal(e.t, InstanceWorkflowName, can.WorkflowType.Name)
	var next InstanceRequest
	require.NoError(e.t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	return next
}

func TestInstanceRunsOneBackupAtATimeQueuesAndJoins(t *testing.T) {
	e := newEntityEnv(t)
	var a, b, c, d, f updateOutcome
	e.update(time.Second, BackupAsk{BackupID: "a1", RequestedBy: "migrator"}, &a) // runs at once
	e.update(2*time.Second, BackupAsk{Type: "incremental"}, &b)                   // queued
	e.update(3*time.Second, BackupAsk{Type: "incremental", AutoFull: true}, &c)   // joined to b (same type, queued)
	e.update(4*time.Second, BackupAsk{BackupID: "a1", Type: "full"}, &d)          // joined to a1 (running)
	e.update(5*time.Second, BackupAsk{}, &f)                                      // full, queued behind b
	var mid InstanceStatus
	e.env.RegisterDelayedCallback(func() { mid = e.status() }, 10*time.Second)
	next := e.run(5*time.Hour, InstanceRequest{Instance: "db1"})

	for _, o := range []*updateOutcome{&a, &b, &c, &d, &f} {
		require.True(t, o.accepted && o.completed, "%+v", o)
		require.NoError(t, o.err)
	}
	require.Equal(t, BackupAccepted{BackupID: "a1", WorkflowID: "backup/db1/a1", Position: 0}, a.answer)
	require.Equal(t, 1, b.answer.Position)
	require.False(t, b.answer.Joined)
	require.Equal(t, "20261124T084502Z", b.answer.BackupID) // accepted 2s after the start
	require.Equal(t, BackupAccepted{BackupID: b.answer.BackupID, WorkflowID: b.answer.WorkflowID, Position: 1, Joined: true}, c.answer)
	require.Equal(t, BackupAccepted{BackupID: "a1", WorkflowID: "backup/db1/a1", Position: 0, Joined: true}, d.answer)
	require.Equal(t, 2, f.answer.Position)

	// The status while a1 ran.
	require.NotNil(t, mid.Running)
	require.Equal(t, "a1", mid.Running.BackupID)
	require.Equal(t, StateRunning, mid.Running.State)
	require.Len(t, mid.Queue, 2)
	require.Equal(t, StateQueued, mid.Queue[0].State)
	require.True(t, mid.Queue[0].Ask.AutoFull, "the joined request's auto_full is kept")

	// One backup at a time, in order, each once.
	require.Equal(t, 1, e.peak)
	require.Len(t, e.started, 3)
	require.Equal(t, []string{"a1", b.answer.BackupID, f.answer.BackupID},
		[]string{e.started[0].BackupID, e.started[1].BackupID, e.started[2].BackupID})
	require.Equal(t, "incremental", e.started[1].Type)
	require.True(t, e.started[1].AutoFull)
	require.Empty(t, next.Queue)
	require.Len(t, next.Recent, 3)
	for _, r := range next.Recent {
		require.Equal(t, StateSucceeded, r.State)
	}
}

func TestInstanceValidatorRejectsBadRequests(t *testing.T) {
	e := newEntityEnv(t)
	bad := map[string]BackupAsk{
		"is not one of full": {Type: "fulll"},
		"backup id \"a/b\"":  {BackupID: "a/b"},
		"backup id \"..\"":   {BackupID: ".."},
		"already running as a full backup, not incremental": {BackupID: "run1", Type: "incremental"},
		"the queue of instance db1 is full":                 {BackupID: "q9"},
	}
	var first updateOutcome
	e.update(time.Second, BackupAsk{BackupID: "run1"}, &first)
	queued := make([]updateOutcome, InstanceQueueBound)
	for i := range queued {
		e.update(2*time.Second, BackupAsk{BackupID: fmt.Sprintf("q%d", i)}, &queued[i])
	}
	outs := map[string]*updateOutcome{}
	for msg, ask := range bad {
		outs[msg] = &updateOutcome{}
		e.update(3*time.Second, ask, outs[msg])
	}
	var joined updateOutcome // a full queue still joins a request to a queued backup
	e.update(4*time.Second, BackupAsk{BackupID: "q3"}, &joined)
	var mid InstanceStatus
	e.env.RegisterDelayedCallback(func() { mid = e.status() }, 5*time.Second)
	e.run(30*time.Minute, InstanceRequest{Instance: "db1"})

	for msg, o := range outs {
		require.Error(t, o.rejected, msg)
		require.Contains(t, o.rejected.Error(), msg)
		require.False(t, o.accepted, msg)
		var ae *temporal.ApplicationError
		require.True(t, errors.As(o.rejected, &ae))
		require.Equal(t, "InvalidRequest", ae.Type())
	}
	require.True(t, joined.accepted)
	require.Equal(t, BackupAccepted{BackupID: "q3", WorkflowID: "backup/db1/q3", Position: 4, Joined: true}, joined.answer)
	require.Len(t, mid.Queue, InstanceQueueBound)
	require.Equal(t, "run1", mid.Running.BackupID)
}

func TestInstanceSignalStartsABackupAndShowsRejectedOnes(t *testing.T) {
	e := newEntityEnv(t)
	e.env.RegisterDelayedCallback(func() {
		e.env.SignalWorkflow(RequestBackupSignal, BackupAsk{BackupID: "s1", Type: "differential", AutoFull: true})
	}, time.Second)
	e.env.RegisterDelayedCallback(func() {
		e.env.SignalWorkflow(RequestBackupSignal, BackupAsk{Type: "nightly"})
	}, 2*time.Second)
	e.fail["s1"] = true
	next := e.run(3*time.Hour, InstanceRequest{Instance: "db1"})
	require.Len(t, e.started, 1)
	require.Equal(t, BackupRequest{Instance: "db1", BackupID: "s1", Type: "differential", AutoFull: true}, e.started[0])
	require.Len(t, next.Recent, 2)
	require.Equal(t, StateRejected, next.Recent[0].State)
	require.Contains(t, next.Recent[0].Error, `"nightly" is not one of full`)
	require.Equal(t, StateFailed, next.Recent[1].State)
	require.Equal(t, "s1", next.Recent[1].BackupID)
	require.Contains(t, next.Recent[1].Error, "boom")
}

func TestInstanceContinuesAsNewBetweenBackupsCarryingTheQueue(t *testing.T) {
	e := newEntityEnv(t)
	var a, b, c updateOutcome
	e.update(time.Second, BackupAsk{BackupID: "a1"}, &a)
	e.update(2*time.Second, BackupAsk{BackupID: "b1", Type: "incremental", RequestedBy: "x", Reason: "y"}, &b)
	e.update(3*time.Second, BackupAsk{BackupID: "c1"}, &c)
	// Suggested while a1 runs: the entity lets a1 finish, then continues
	// as new with b1 and c1 still queued, not started.
	next := e.run(10*time.Minute, InstanceRequest{Instance: "db1", Recent: []InstanceRun{{BackupID: "old", State: StateSucceeded}}})
	require.Len(t, e.started, 1)
	require.Equal(t, "a1", e.started[0].BackupID)
	require.Equal(t, []BackupAsk{{BackupID: "b1", Type: "incremental", RequestedBy: "x", Reason: "y"}, {BackupID: "c1", Type: "full"}}, next.Queue)
	require.Equal(t, []string{"old", "a1"}, []string{next.Recent[0].BackupID, next.Recent[1].BackupID})
	require.Equal(t, "db1", next.Instance)

	// The next run starts with the carried queue and runs it in order.
	e2 := newEntityEnv(t)
	var dup updateOutcome
	e2.update(time.Second, BackupAsk{BackupID: "a1"}, &dup) // a1 is in the carried recent runs
	after := e2.run(5*time.Hour, next)
	require.Contains(t, dup.rejected.Error(), "backup id a1 of db1 was used by a backup that succeeded")
	require.Equal(t, 1, e2.peak)
	require.Len(t, e2.started, 2)
	require.Equal(t, "b1", e2.started[0].BackupID)
	require.Equal(t, "c1", e2.started[1].BackupID)
	require.Len(t, after.Recent, 4)
}
