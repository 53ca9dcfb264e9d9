package workflows

import (
	"fmt"
	"regexp"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/manifest"
)

// InstanceQueueBound is how many requests an entity keeps queued behind
// the running backup; a request beyond it is rejected (Update) or dropped
// (Signal), never silently lost.
const InstanceQueueBound = 8

// instanceRecent is how many finished runs the entity remembers.
const instanceRecent = 10

// backupIDRE is what a backup id named by a caller must look like: it
// becomes a path segment in the repository and part of a workflow id.
var backupIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$`)

// CheckBackupID reports whether id can name a backup: 1-100 letters,
// digits, '.', '_', ':' or '-', starting with a letter or digit.
func CheckBackupID(id string) error {
	if !backupIDRE.MatchString(id) {
		return fmt.Errorf("backup id %q is invalid: use 1-100 letters, digits, '.', '_', ':' or '-', starting with a letter or digit (e.g. 20261124T084500Z)", id)
	}
	return nil
}

// entity is the state of an InstanceWorkflow run.
type entity struct {
	instance string
	running  *InstanceRun
	queue    []*InstanceRun
	recent   []InstanceRun
}

// decision is what admit says of an ask: join an existing run, or queue
// a new one at position.
type decision struct {
	join     *InstanceRun
	position int
}

// position is the answer's position of queue[i]: 0 is the backup that
// runs now, or starts next when none runs (requests accepted in one
// workflow task, before the main loop starts the first).
func (e *entity) position(i int) int {
	if e.running == nil {
		return i
	}
	return i + 1
}

func (e *entity) lookup(id string) (*InstanceRun, int) {
	if e.running != nil && e.running.BackupID == id {
		return e.running, 0
	}
	for i, r := range e.queue {
		if r.BackupID == id {
			return r, e.position(i)
		}
	}
	return nil, 0
}

// admit decides on ask (its type defaulted) without changing the state:
// the validator and the handlers share it.
func (e *entity) admit(ask BackupAsk) (decision, error) {
	if !manifest.IsBackupType(ask.Type) {
		return decision{}, fmt.Errorf("backup type %q is not one of %s", ask.Type, manifest.BackupTypes)
	}
	if ask.BackupID != "" {
		if err := CheckBackupID(ask.BackupID); err != nil {
			return decision{}, err
		}
		if r, pos := e.lookup(ask.BackupID); r != nil {
			if r.Ask.Type != ask.Type {
				return decision{}, fmt.Errorf("backup id %s of %s is already %s as a %s backup, not %s: choose another id", ask.BackupID, e.instance, r.State, r.Ask.Type, ask.Type)
			}
			return decision{join: r, position: pos}, nil
		}
		for _, r := range e.recent {
			if r.BackupID == ask.BackupID {
				return decision{}, fmt.Errorf("backup id %s of %s was used by a backup that %s at %s: choose another id", ask.BackupID, e.instance, r.State, r.FinishedAt.Format("2006-01-02 15:04:05Z07:00"))
			}
		}
	} else {
		for i, r := range e.queue {
			if r.Ask.Type == ask.Type {
				return decision{join: r, position: e.position(i)}, nil
			}
		}
	}
	if len(e.queue) >= InstanceQueueBound {
		return decision{}, fmt.Errorf("the queue of instance %s is full (%d requests wait behind the running backup): retry later, or join a queued request by its backup id", e.instance, InstanceQueueBound)
	}
	return decision{position: e.position(len(e.queue))}, nil
}

// used reports whether a backup id is taken by a run the entity knows.
func (e *entity) used(id string) bool {
	if r, _ := e.lookup(id); r != nil {
		return true
	}
	for _, r := range e.recent {
		if r.BackupID == id {
			return true
		}
	}
	return false
}

// accept admits ask and records it, returning the answer.
func (e *entity) accept(ctx workflow.Context, ask BackupAsk) (BackupAccepted, error) {
	if ask.Type == "" {
		ask.Type = manifest.TypeFull
	}
	d, err := e.admit(ask)
	if err != nil {
		return BackupAccepted{}, err
	}
	if r := d.join; r != nil {
		r.Ask.AutoFull = r.Ask.AutoFull || ask.AutoFull
		return BackupAccepted{BackupID: r.BackupID, WorkflowID: r.WorkflowID, Position: d.position, Joined: true}, nil
	}
	now := workflow.Now(ctx)
	if ask.BackupID == "" {
		base := now.UTC().Format(BackupIDFormat)
		ask.BackupID = base
		for n := 2; e.used(ask.BackupID); n++ {
			ask.BackupID = fmt.Sprintf("%s-%d", base, n)
		}
	}
	r := &InstanceRun{Ask: ask, BackupID: ask.BackupID, WorkflowID: BackupWorkflowID(e.instance, ask.BackupID),
		State: StateQueued, AcceptedAt: now}
	e.queue = append(e.queue, r)
	workflow.GetLogger(ctx).Info("backup request accepted", "backup_id", r.BackupID,
		"type", ask.Type, "requested_by", ask.RequestedBy, "reason", ask.Reason, "position", d.position)
	return BackupAccepted{BackupID: r.BackupID, WorkflowID: r.WorkflowID, Position: d.position}, nil
}

func (e *entity) finish(r InstanceRun) {
	e.recent = append(e.recent, r)
	if n := len(e.recent) - instanceRecent; n > 0 {
		e.recent = append([]InstanceRun(nil), e.recent[n:]...)
	}
}

func (e *entity) status() InstanceStatus {
	st := InstanceStatus{Instance: e.instance, Queue: []InstanceRun{}, Recent: append([]InstanceRun{}, e.recent...)}
	if e.running != nil {
		r := *e.running
		st.Running = &r
	}
	for _, r := range e.queue {
		st.Queue = append(st.Queue, *r)
	}
	return st
}

// InstanceWorkflow is the entity of one instance (id InstanceWorkflowID),
// the one door for work on it. It accepts backup requests by the
// RequestBackupUpdate (a validator rejects a bad request before it enters
// the history) and the RequestBackupSignal (a bad one is logged and shown
// as rejected in the status), and runs them one at a time as child
// BackupWorkflows. The rule:
//
//   - a request while a backup runs is queued, first come first served;
//   - a request naming the backup id of a run queued or running is joined
//     to it (same answer); with another type it is rejected;
//   - a request without a backup id, of the type of a request still
//     queued, is joined to that one;
//   - at most InstanceQueueBound requests wait; one more is rejected.
//
// The Update answers as soon as the request is accepted (BackupAccepted:
// backup id, its workflow id, position); the caller waits for the backup
// on its workflow. The entity continues as new, between backups and once
// every handler has finished, when Temporal suggests it, carrying its
// queue and recent runs.
func InstanceWorkflow(ctx workflow.Context, req InstanceRequest) error {
	log := workflow.GetLogger(ctx)
	e := &entity{instance: req.Instance, recent: req.Recent}
	if e.instance == "" {
		e.instance = strings.TrimPrefix(workflow.GetInfo(ctx).WorkflowExecution.ID, InstanceWorkflowID(""))
	}
	for _, ask := range req.Queue {
		if _, err := e.accept(ctx, ask); err != nil {
			log.Warn("carried request dropped", "backup_id", ask.BackupID, "error", err)
		}
	}
	if _, ok := workflow.GetTypedSearchAttributes(ctx).GetKeyword(SAKind); !ok {
		// Started without them (e.g. signal-with-start by the temporal CLI).
		if err := workflow.UpsertTypedSearchAttributes(ctx, SAInstance.ValueSet(e.instance), SAKind.ValueSet("instance")); err != nil {
			return err
		}
	}
	if err := workflow.SetQueryHandler(ctx, InstanceStatusQuery, func() (InstanceStatus, error) {
		return e.status(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, RequestBackupUpdate,
		func(ctx workflow.Context, ask BackupAsk) (BackupAccepted, error) {
			return e.accept(ctx, ask)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, ask BackupAsk) error {
			if ask.Type == "" {
				ask.Type = manifest.TypeFull
			}
			if _, err := e.admit(ask); err != nil {
				return temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrInvalidRequest, nil)
			}
			return nil
		}},
	); err != nil {
		return err
	}
	signals := workflow.GetSignalChannel(ctx, RequestBackupSignal)
	onSignal := func(ask BackupAsk) {
		if _, err := e.accept(ctx, ask); err != nil {
			log.Warn("backup request by signal rejected", "backup_id", ask.BackupID, "error", err)
			e.finish(InstanceRun{Ask: ask, BackupID: ask.BackupID, State: StateRejected, Error: err.Error(),
				AcceptedAt: workflow.Now(ctx), FinishedAt: workflow.Now(ctx)})
		}
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var ask BackupAsk
			signals.Receive(ctx, &ask)
			onSignal(ask)
		}
	})
	states := workflow.GetSignalChannel(ctx, backupStateSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var s backupState
			states.Receive(ctx, &s)
			if e.running != nil && e.running.BackupID == s.BackupID {
				e.running.State = s.State
			}
		}
	})

	for {
		suggested := func() bool { return workflow.GetInfo(ctx).GetContinueAsNewSuggested() }
		if err := workflow.Await(ctx, func() bool { return len(e.queue) > 0 || suggested() }); err != nil {
			return err
		}
		if suggested() {
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			for {
				var ask BackupAsk
				if !signals.ReceiveAsync(&ask) {
					break
				}
				onSignal(ask)
			}
			next := InstanceRequest{Instance: e.instance, Recent: e.recent}
			for _, r := range e.queue {
				next.Queue = append(next.Queue, r.Ask)
			}
			log.Info("continuing as new", "queued", len(next.Queue))
			return workflow.NewContinueAsNewError(ctx, InstanceWorkflowName, next)
		}
		r := e.queue[0]
		e.queue = e.queue[1:]
		e.running = r
		r.State, r.StartedAt = StateRunning, workflow.Now(ctx)
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            r.WorkflowID,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
			TypedSearchAttributes: SearchAttributes(e.instance, "backup", r.BackupID, ""),
		})
		var res BackupResult
		err := workflow.ExecuteChildWorkflow(cctx, BackupWorkflowName, BackupRequest{
			Instance: e.instance, BackupID: r.BackupID, Type: r.Ask.Type, AutoFull: r.Ask.AutoFull,
		}).Get(ctx, &res)
		r.FinishedAt = workflow.Now(ctx)
		if err != nil {
			r.State, r.Error = StateFailed, err.Error()
			log.Warn("backup failed", "backup_id", r.BackupID, "error", err)
		} else {
			r.State = StateSucceeded
		}
		e.running = nil
		e.finish(*r)
	}
}
