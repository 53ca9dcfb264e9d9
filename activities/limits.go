package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/config"
)

// Fleet-wide limits of concurrent work (config fleet.max_concurrent_backups,
// fleet.max_concurrent_restores, storage.max_concurrent) are counting
// semaphores kept by limiter workflows (workflows.LimiterWorkflow), one per
// limit. A holder asks for a permit with RequestPermit (signal-with-start
// of the limiter), waits for the limiter's LimiterGrantSignal, and gives
// the permit back with LimiterReleaseSignal; the limiter takes back the
// permits of holders that closed without releasing (ClosedHolders).
const (
	// LimiterAcquireSignal (LimiterAcquire) asks a limiter for a permit.
	LimiterAcquireSignal = "acquire"
	// LimiterReleaseSignal (Permit) gives a permit back, or withdraws a
	// waiting request.
	LimiterReleaseSignal = "release"
	// LimiterGrantSignal (PermitGrant) is sent by the limiter to a holder.
	LimiterGrantSignal = "permit"
	// LimiterStatusQuery answers LimiterState: limit, holders, waiters.
	LimiterStatusQuery = "state"

	// LimitKindBackup and LimitKindRestore say which work a limit bounds.
	LimitKindBackup  = "backup"
	LimitKindRestore = "restore"
)

// Limit is one fleet-wide limit: Scope and Name make its limiter's
// workflow id (workflows.LimiterWorkflowID), e.g. fleet/backup,
// storage/local:/repo.
type Limit struct {
	Scope string `json:"scope"`
	Name  string `json:"name"`
	// Kinds are the kinds of work it bounds (backup, restore).
	Kinds []string `json:"kinds"`
	Max   int      `json:"max"`
}

// Applies reports whether the limit bounds work of kind.
func (l Limit) Applies(kind string) bool {
	for _, k := range l.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// limits are the configured limits (a limit of 0 is none), in the order a
// holder acquires them: fleet first, then storage, so that two holders
// never wait for each other's permits.
func (c *Catalog) limits() []Limit { return Limits(c.Config) }

// Limits returns the fleet-wide limits cfg sets, in acquisition order.
func Limits(cfg *config.Config) []Limit {
	var out []Limit
	if n := cfg.Fleet.MaxConcurrentBackups; n > 0 {
		out = append(out, Limit{Scope: "fleet", Name: LimitKindBackup, Kinds: []string{LimitKindBackup}, Max: n})
	}
	if n := cfg.Fleet.MaxConcurrentRestores; n > 0 {
		out = append(out, Limit{Scope: "fleet", Name: LimitKindRestore, Kinds: []string{LimitKindRestore}, Max: n})
	}
	if n := cfg.Storage.MaxConcurrent; n > 0 {
		out = append(out, Limit{Scope: "storage", Name: cfg.Storage.Target(), Kinds: []string{LimitKindBackup, LimitKindRestore}, Max: n})
	}
	return out
}

// Permit names one holder (or waiter) of a limiter's permit: a workflow
// run.
type Permit struct {
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
	Instance   string    `json:"instance,omitempty"`
	Kind       string    `json:"kind,omitempty"`
	Since      time.Time `json:"since,omitzero"` // asked (waiter) or granted (holder)
}

// Same reports whether p and o are the same workflow run.
func (p Permit) Same(o Permit) bool { return p.WorkflowID == o.WorkflowID && p.RunID == o.RunID }

// LimiterAcquire is the LimiterAcquireSignal: the holder and the limit in
// force when it asked (a changed limit applies from then on).
type LimiterAcquire struct {
	Permit Permit `json:"permit"`
	Max    int    `json:"max"`
}

// PermitGrant is the LimiterGrantSignal: Limiter is the limiter's
// workflow id.
type PermitGrant struct {
	Limiter string `json:"limiter"`
}

// LimiterState is a limiter workflow's input (and continue-as-new input)
// and the answer of its LimiterStatusQuery.
type LimiterState struct {
	ID  string `json:"id"`
	Max int    `json:"max"`
	// Holders hold a permit; Waiters wait for one, first come first served.
	Holders []Permit `json:"holders"`
	Waiters []Permit `json:"waiters"`
	// CheckInterval is how often, while it has holders or waiters, the
	// limiter checks they are still running (default 30s).
	CheckInterval time.Duration `json:"check_interval,omitempty"`
}

// PermitRequest asks the limiter LimiterID (of workflow type WorkflowType)
// for a permit; the limiter is started if it is not running.
type PermitRequest struct {
	LimiterID    string `json:"limiter_id"`
	WorkflowType string `json:"workflow_type"`
	Max          int    `json:"max"`
	Permit       Permit `json:"permit"`
}

// RequestPermit signals the limiter, starting it first if it is not
// running (signal-with-start, on this worker's task queue). The permit is
// granted later, by the limiter's signal to the holder. A retry is
// harmless: the limiter ignores a request it already holds or queues,
// re-sending the grant of one it holds.
func (c *Catalog) RequestPermit(ctx context.Context, req PermitRequest) error {
	if c.Client == nil {
		return fail(ErrInvalidRequest, "fleet limits are configured but this worker has no Temporal client: run it with `strata worker`")
	}
	_, err := c.Client.SignalWithStartWorkflow(ctx, req.LimiterID, LimiterAcquireSignal,
		LimiterAcquire{Permit: req.Permit, Max: req.Max},
		client.StartWorkflowOptions{
			ID:        req.LimiterID,
			TaskQueue: activity.GetInfo(ctx).TaskQueue,
		},
		req.WorkflowType, LimiterState{ID: req.LimiterID, Max: req.Max})
	if err != nil {
		return fmt.Errorf("ask limiter %s for a permit: %w", req.LimiterID, err)
	}
	return nil
}

// ClosedHolders returns those of ps whose workflow run is no longer
// running (completed, failed, cancelled, terminated, timed out, or gone).
func (c *Catalog) ClosedHolders(ctx context.Context, ps []Permit) ([]Permit, error) {
	var closed []Permit
	for _, p := range ps {
		d, err := c.Client.DescribeWorkflowExecution(ctx, p.WorkflowID, p.RunID)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			closed = append(closed, p)
		case err != nil:
			return nil, fmt.Errorf("describe holder %s: %w", p.WorkflowID, err)
		case d.WorkflowExecutionInfo.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
			closed = append(closed, p)
		}
	}
	return closed, nil
}
