package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/config"
)

// Retry policy for activities: transient faults are retried with backoff by
// the engine; typed application errors are non-retryable by construction.
// The config validates partial_grace against it (config.MaxBackupSpan).
var retry = &temporal.RetryPolicy{
	InitialInterval:    config.RetryInitialInterval,
	BackoffCoefficient: config.RetryBackoff,
	MaximumInterval:    config.RetryMaxInterval,
	MaximumAttempts:    config.ActivityAttempts,
}

// catalogCtx is for short activities on the strata worker.
func catalogCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         retry,
	})
}

// agentCtx routes long activities to the agent of a host. The
// ScheduleToStart timeout turns a dead or missing agent into an error.
func agentCtx(ctx workflow.Context, r *activities.InstanceRoute, taskQueue string, startToClose time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              taskQueue,
		ScheduleToStartTimeout: r.AgentStartTimeout,
		StartToCloseTimeout:    startToClose,
		HeartbeatTimeout:       heartbeatTimeout(r),
		WaitForCancellation:    true, // let the agent kill its tools and clean up
		RetryPolicy:            retry,
	})
}

// agentError explains a ScheduleToStart timeout: nobody polls the agent queue.
func agentError(err error, host, taskQueue string) error {
	var te *temporal.TimeoutError
	if errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"no agent picked up the work on task queue %s in time: is `strata agent --host %s` running and connected to this Temporal namespace, "+
				"or busy with other backups/restores (agent.max_concurrent)? Raise temporal.agent_start_timeout to wait longer", taskQueue, host),
			activities.ErrAgentUnavailable, err)
	}
	return err
}

func invalid(format string, a ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, a...), activities.ErrInvalidRequest, nil)
}

// heartbeatTimeout is the route's, or 30s for routes recorded before it
// was configurable.
func heartbeatTimeout(r *activities.InstanceRoute) time.Duration {
	if r.HeartbeatTimeout > 0 {
		return r.HeartbeatTimeout
	}
	return 30 * time.Second
}
