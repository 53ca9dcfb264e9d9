package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
)

// Names of the archive workflow, its query and its signal.
const (
	ArchiveWorkflowName = "BinlogArchiveWorkflow"
	ArchiveStatusQuery  = "status"
	ArchiveStopSignal   = "stop"
)

// ArchiveRequest starts continuous binlog archiving of an instance.
type ArchiveRequest struct {
	Instance string `json:"instance"`
	// RunFor is how long one archiving activity runs before it reports
	// back (default 10m); the workflow starts the next at once.
	RunFor time.Duration `json:"run_for,omitempty"`
	// State carries the workflow's state across continue-as-new.
	State *ArchiveState `json:"state,omitempty"`
}

// ArchiveState is what the status query returns.
type ArchiveState struct {
	Instance  string        `json:"instance"`
	Host      string        `json:"host"`
	Since     time.Time     `json:"since"`
	Runs      int           `json:"runs"`
	Stopping  bool          `json:"stopping"`
	Last      binlog.Status `json:"last"` // as of the end of the last run
	LastError string        `json:"last_error,omitempty"`
	ErrorAt   time.Time     `json:"error_at,omitempty"`
	// Windows and Gaps are the recovery windows and archive gaps as of the
	// start of the current run.
	Windows []binlog.Window `json:"windows"`
	Gaps    []binlog.Gap    `json:"gaps"`
}

// ArchiveCoverageChange is the workflow.GetVersion change id of the
// archive workflow's coverage reads.
const ArchiveCoverageChange = "archive-coverage"

// runsPerHistory bounds the runs one workflow history holds before it
// continues as new.
const runsPerHistory = 100

// BinlogArchiveWorkflow keeps an instance's binlogs streaming into the
// repository until it is signalled to stop. Each run is a bounded activity
// on the instance's agent that resumes from the archive itself, retried by
// the engine after any failure; the workflow never gives up on its own.
func BinlogArchiveWorkflow(ctx workflow.Context, req ArchiveRequest) (*ArchiveState, error) {
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	if req.RunFor <= 0 {
		req.RunFor = 10 * time.Minute
	}
	st := req.State
	if st == nil {
		st = &ArchiveState{Instance: req.Instance, Since: workflow.Now(ctx)}
	}
	if err := workflow.SetQueryHandler(ctx, ArchiveStatusQuery, func() (*ArchiveState, error) { return st, nil }); err != nil {
		return nil, err
	}
	stop := workflow.GetSignalChannel(ctx, ArchiveStopSignal)
	workflow.Go(ctx, func(gctx workflow.Context) {
		stop.Receive(gctx, nil)
		st.Stopping = true
	})

	var cat *activities.Catalog
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.ResolveInstance, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &route); err != nil {
		return nil, err
	}
	st.Host = route.Host
	var agent *activities.Agent
	// The coverage reads (ArchiveWindows before every run and when the
	// workflow stops) shipped without a version marker, so every history
	// of that code has them and no marker: DefaultVersion and version 1
	// read coverage alike, and a later change to the reads branches on this
	// version (DefaultVersion and 1 keep today's sequence).
	_ = workflow.GetVersion(ctx, ArchiveCoverageChange, workflow.DefaultVersion, 1)
	coverage := func() {
		var cov activities.ArchiveCoverage
		if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.ArchiveWindows, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &cov); err == nil {
			st.Windows, st.Gaps = cov.Windows, cov.Gaps
		}
	}
	for runs := 0; runs < runsPerHistory; runs++ {
		if st.Stopping {
			return st, nil
		}
		coverage()
		actx, cancel := workflow.WithCancel(ctx)
		actx = workflow.WithActivityOptions(actx, workflow.ActivityOptions{
			TaskQueue:           route.ArchiveTaskQueue,
			StartToCloseTimeout: req.RunFor + 5*time.Minute,
			// A dead agent is noticed within seconds; the retry resumes
			// from the archive on whichever agent of the host polls next.
			HeartbeatTimeout:    10 * time.Second,
			WaitForCancellation: true,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
				MaximumInterval: 30 * time.Second},
		})
		fut := workflow.ExecuteActivity(actx, agent.ArchiveBinlogs, activities.ArchiveParams{Instance: req.Instance, RunFor: req.RunFor})
		_ = workflow.Await(ctx, func() bool { return st.Stopping || fut.IsReady() })
		if !fut.IsReady() {
			cancel() // stop: the agent writes what it holds and returns
		}
		var status binlog.Status
		if err := fut.Get(ctx, &status); err != nil {
			var canceled *temporal.CanceledError
			if !(st.Stopping && errors.As(err, &canceled)) {
				st.LastError, st.ErrorAt = err.Error(), workflow.Now(ctx)
			}
		} else {
			st.Last, st.LastError = status, ""
		}
		cancel()
		st.Runs++
		if st.Stopping {
			coverage()
			return st, nil
		}
		if st.LastError != "" && !st.Stopping {
			// Non-retryable (bad configuration) or the agent is gone: wait and
			// try again; the status query shows the error meanwhile.
			_, _ = workflow.AwaitWithTimeout(ctx, 30*time.Second, func() bool { return st.Stopping })
		}
	}
	if st.Stopping || stop.ReceiveAsync(nil) {
		st.Stopping = true
		coverage()
		return st, nil
	}
	return nil, workflow.NewContinueAsNewError(ctx, BinlogArchiveWorkflow, ArchiveRequest{Instance: req.Instance, RunFor: req.RunFor, State: st})
}
