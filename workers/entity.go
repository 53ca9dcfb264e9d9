package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/workflows"
)

// entityStart is how a client starts an instance's entity workflow when
// it is not running (update-/signal-with-start): on the worker's task
// queue, with its search attributes.
func entityStart(taskQueue, instance string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       workflows.InstanceWorkflowID(instance),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    workflows.SearchAttributes(instance, "instance", "", ""),
	}
}

// RequestBackup asks instance's entity workflow for a backup by Update,
// starting the entity if it is not running (update-with-start). It returns
// once the entity has accepted the request (or its validator rejected it:
// the error says why).
func RequestBackup(ctx context.Context, c client.Client, taskQueue, instance string, ask workflows.BackupAsk) (workflows.BackupAccepted, error) {
	var acc workflows.BackupAccepted
	op := c.NewWithStartWorkflowOperation(entityStart(taskQueue, instance), workflows.InstanceWorkflowName,
		workflows.InstanceRequest{Instance: instance})
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: op,
		UpdateOptions: client.UpdateWorkflowOptions{
			WorkflowID:   workflows.InstanceWorkflowID(instance),
			UpdateName:   workflows.RequestBackupUpdate,
			Args:         []any{ask},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return acc, fmt.Errorf("request a backup of %s from %s: %w", instance, workflows.InstanceWorkflowID(instance), err)
	}
	if err := h.Get(ctx, &acc); err != nil {
		return acc, fmt.Errorf("backup request for %s rejected: %w", instance, err)
	}
	return acc, nil
}

// SignalBackup asks instance's entity workflow for a backup by Signal
// (fire and forget), starting the entity if it is not running
// (signal-with-start).
func SignalBackup(ctx context.Context, c client.Client, taskQueue, instance string, ask workflows.BackupAsk) error {
	_, err := c.SignalWithStartWorkflow(ctx, workflows.InstanceWorkflowID(instance), workflows.RequestBackupSignal, ask,
		entityStart(taskQueue, instance), workflows.InstanceWorkflowName, workflows.InstanceRequest{Instance: instance})
	if err != nil {
		return fmt.Errorf("signal %s: %w", workflows.InstanceWorkflowID(instance), err)
	}
	return nil
}

// WaitBackup waits for the backup an entity accepted and decodes its
// result. A queued backup's workflow does not exist until the entity
// starts it: WaitBackup looks again every poll until it does.
func WaitBackup(ctx context.Context, c client.Client, acc workflows.BackupAccepted, poll time.Duration, res *workflows.BackupResult) error {
	for {
		err := c.GetWorkflow(ctx, acc.WorkflowID, "").Get(ctx, res)
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
