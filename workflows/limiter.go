package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
)

// LimiterWorkflowName is the type of the limiter workflows.
const LimiterWorkflowName = "LimiterWorkflow"

// LimiterBatchChange is the version of LimiterWorkflow that sends the
// grants free at once together and drains its signals until none is left
// before it continues as new.
const LimiterBatchChange = "limiter-batch-grants"

// limiterCheckInterval is how often a limiter checks that its holders and
// waiters are still running, by default.
const limiterCheckInterval = 30 * time.Second

// LimiterWorkflow is a counting semaphore for one fleet-wide limit
// (activities.Limit), id LimiterWorkflowID. Holders ask by
// activities.LimiterAcquireSignal (sent by the RequestPermit activity with
// signal-with-start), are granted a permit by activities.LimiterGrantSignal
// in the order they asked while fewer than Max hold one, and give it back
// with activities.LimiterReleaseSignal. While it has holders or waiters it
// checks every CheckInterval that they are still running (ClosedHolders)
// and takes back the permits of those that are not, so that a holder that
// was terminated, or whose release was lost, holds no permit for ever. A
// grant that cannot be delivered (the waiter is gone) is taken back at
// once. It never completes; it continues as new when Temporal suggests,
// carrying its holders and waiters.
func LimiterWorkflow(ctx workflow.Context, st activities.LimiterState) error {
	log := workflow.GetLogger(ctx)
	if st.ID == "" {
		st.ID = workflow.GetInfo(ctx).WorkflowExecution.ID
	}
	if st.CheckInterval <= 0 {
		st.CheckInterval = limiterCheckInterval
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, SAKind.ValueSet("limiter")); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, activities.LimiterStatusQuery, func() (activities.LimiterState, error) {
		return st, nil
	}); err != nil {
		return err
	}
	acquireCh := workflow.GetSignalChannel(ctx, activities.LimiterAcquireSignal)
	releaseCh := workflow.GetSignalChannel(ctx, activities.LimiterReleaseSignal)

	// grant hands out every permit free now, all signals at once (one
	// round trip for the lot, not one each), then takes back those that
	// could not be delivered (the waiter is gone).
	// Limiters recorded before LimiterBatchChange sent one grant at a time
	// and could lose a signal that came during the last grants before a
	// continue-as-new.
	batch := workflow.GetVersion(ctx, LimiterBatchChange, workflow.DefaultVersion, 1) >= 1
	grant := func() {
		for len(st.Waiters) > 0 && len(st.Holders) < max(st.Max, 1) {
			if !batch {
				p := st.Waiters[0]
				st.Waiters = st.Waiters[1:]
				p.Since = workflow.Now(ctx)
				st.Holders = append(st.Holders, p)
				if err := workflow.SignalExternalWorkflow(ctx, p.WorkflowID, p.RunID, activities.LimiterGrantSignal,
					activities.PermitGrant{Limiter: st.ID}).Get(ctx, nil); err != nil {
					log.Warn("permit not delivered: the waiter is gone; taken back", "holder", p.WorkflowID, "error", err)
					st.Holders = removePermit(st.Holders, p)
				}
				continue
			}
			var granted []activities.Permit
			var sent []workflow.Future
			for len(st.Waiters) > 0 && len(st.Holders) < max(st.Max, 1) {
				p := st.Waiters[0]
				st.Waiters = st.Waiters[1:]
				p.Since = workflow.Now(ctx)
				st.Holders = append(st.Holders, p)
				granted = append(granted, p)
				sent = append(sent, workflow.SignalExternalWorkflow(ctx, p.WorkflowID, p.RunID, activities.LimiterGrantSignal,
					activities.PermitGrant{Limiter: st.ID}))
			}
			for i, f := range sent {
				if err := f.Get(ctx, nil); err != nil {
					log.Warn("permit not delivered: the waiter is gone; taken back", "holder", granted[i].WorkflowID, "error", err)
					st.Holders = removePermit(st.Holders, granted[i])
				}
			}
		}
	}
	acquire := func(a activities.LimiterAcquire) {
		if a.Max > 0 {
			st.Max = a.Max
		}
		p := a.Permit
		for _, h := range st.Holders {
			if h.Same(p) { // a retried request: grant again
				_ = workflow.SignalExternalWorkflow(ctx, p.WorkflowID, p.RunID, activities.LimiterGrantSignal,
					activities.PermitGrant{Limiter: st.ID}).Get(ctx, nil)
				return
			}
		}
		for _, w := range st.Waiters {
			if w.Same(p) {
				return
			}
		}
		p.Since = workflow.Now(ctx)
		st.Waiters = append(st.Waiters, p)
	}
	release := func(p activities.Permit) {
		st.Holders = removePermit(st.Holders, p)
		st.Waiters = removePermit(st.Waiters, p)
	}
	drain := func() {
		for {
			var a activities.LimiterAcquire
			var p activities.Permit
			switch {
			case acquireCh.ReceiveAsync(&a):
				acquire(a)
			case releaseCh.ReceiveAsync(&p):
				release(p)
			default:
				return
			}
		}
	}

	var cat *activities.Catalog
	var check workflow.Future // the pending check timer, if any
	for {
		drain()
		grant()
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			// Signals that arrive while the last grants are sent must be in
			// the state carried over: drain and grant until a drain finds
			// nothing, then continue as new in the same step (a signal
			// after that fails the step, which is run again with it).
			if !batch {
				drain()
				grant()
			}
			for batch && acquireCh.Len()+releaseCh.Len() > 0 {
				drain()
				grant()
			}
			return workflow.NewContinueAsNewError(ctx, LimiterWorkflowName, st)
		}
		if check == nil && len(st.Holders)+len(st.Waiters) > 0 {
			check = workflow.NewTimer(ctx, st.CheckInterval)
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(acquireCh, func(c workflow.ReceiveChannel, _ bool) {
			var a activities.LimiterAcquire
			c.Receive(ctx, &a)
			acquire(a)
		})
		sel.AddReceive(releaseCh, func(c workflow.ReceiveChannel, _ bool) {
			var p activities.Permit
			c.Receive(ctx, &p)
			release(p)
		})
		if check != nil {
			sel.AddFuture(check, func(workflow.Future) {
				check = nil
				var closed []activities.Permit
				all := append(append([]activities.Permit(nil), st.Holders...), st.Waiters...)
				if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.ClosedHolders, all).Get(ctx, &closed); err != nil {
					log.Warn("could not check the limiter's holders; will check again", "error", err)
					return
				}
				for _, p := range closed {
					log.Warn("holder closed without releasing its permit; taken back", "holder", p.WorkflowID, "run", p.RunID)
					release(p)
				}
			})
		}
		sel.Select(ctx)
	}
}

func removePermit(ps []activities.Permit, p activities.Permit) []activities.Permit {
	out := ps[:0:0]
	for _, q := range ps {
		if !q.Same(p) {
			out = append(out, q)
		}
	}
	return out
}

// backupStateSignal is sent by a BackupWorkflow started by an entity to its
// parent: the backup waits for a fleet permit, or runs.
const backupStateSignal = "backup-state"

// backupState is the backupStateSignal.
type backupState struct {
	BackupID string `json:"backup_id"`
	State    string `json:"state"`
}

// Run states of InstanceRun.
const (
	StateQueued         = "queued"
	StateWaitingForSlot = "waiting-for-slot"
	StateRunning        = "running"
	StateSucceeded      = "succeeded"
	StateFailed         = "failed"
	StateRejected       = "rejected"
)

// acquirePermits takes a permit of every limit of the route that applies
// to kind, one after the other in the route's order, waiting as long as it
// takes (the workflow's state is then "waiting-for-slot", told to an
// entity parent). The returned release gives them all back, also when the
// workflow is cancelled; call it when the work is done, however it ended.
func acquirePermits(ctx workflow.Context, route *activities.InstanceRoute, kind, backupID string) (release func(), err error) {
	var limits []activities.Limit
	for _, l := range route.Limits {
		if l.Applies(kind) && l.Max > 0 {
			limits = append(limits, l)
		}
	}
	if len(limits) == 0 {
		return func() {}, nil
	}
	info := workflow.GetInfo(ctx)
	me := activities.Permit{WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID, Instance: route.Instance, Kind: kind}
	var asked []string
	release = func() {
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		for _, id := range asked {
			if err := workflow.SignalExternalWorkflow(dctx, id, "", activities.LimiterReleaseSignal, me).Get(dctx, nil); err != nil {
				// The limiter takes the permit back when it sees us closed.
				workflow.GetLogger(ctx).Warn("could not release a permit", "limiter", id, "error", err)
			}
		}
	}
	tell := func(state string) {
		if p := info.ParentWorkflowExecution; p != nil && backupID != "" {
			_ = workflow.SignalExternalWorkflow(ctx, p.ID, p.RunID, backupStateSignal, backupState{BackupID: backupID, State: state}).Get(ctx, nil)
		}
	}
	tell(StateWaitingForSlot)
	var cat *activities.Catalog
	grants := workflow.GetSignalChannel(ctx, activities.LimiterGrantSignal)
	for _, l := range limits {
		id := LimiterWorkflowID(l.Scope, l.Name)
		asked = append(asked, id)
		if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.RequestPermit, activities.PermitRequest{
			LimiterID: id, WorkflowType: LimiterWorkflowName, Max: l.Max, Permit: me,
		}).Get(ctx, nil); err != nil {
			release()
			return nil, err
		}
		for granted := false; !granted; {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(grants, func(c workflow.ReceiveChannel, _ bool) {
				var g activities.PermitGrant
				c.Receive(ctx, &g)
				granted = g.Limiter == id // a grant of another limiter is a resent one
			})
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(ctx)
			if ctx.Err() != nil {
				release()
				return nil, ctx.Err()
			}
		}
	}
	tell(StateRunning)
	return release, nil
}
