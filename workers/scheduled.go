package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/workflows"
)

// Scheduled holds the worker's activity of ScheduledWorkflow: it needs a
// Temporal client, to reach the instance's entity workflow.
type Scheduled struct {
	Client    client.Client
	TaskQueue string
	// Poll is how often the wait for the backup heartbeats (default 5s).
	Poll time.Duration
}

// RequestScheduledBackup asks the instance's entity workflow for a backup
// by update-with-start (the entity is started if it is not running) and
// waits until that backup's workflow has finished, heartbeating, so that
// the Schedule's overlap policy sees the run as busy meanwhile. The update
// id is the scheduled run's workflow id and the backup id is fixed per run,
// so a retried attempt joins the backup its first attempt asked for.
func (s *Scheduled) RequestScheduledBackup(ctx context.Context, req workflows.ScheduledBackupAsk) (*workflows.ScheduledResult, error) {
	info := activity.GetInfo(ctx)
	// Under load (a backlog on the worker's task queue) the entity may take
	// longer to answer than one request waits: ask again with the same
	// update id, which the entity answers once, heartbeating meanwhile.
	var acc workflows.BackupAccepted
	for {
		err := s.askEntity(ctx, info.WorkflowExecution.ID+"/"+req.Ask.BackupID, req, &acc)
		if err == nil {
			break
		}
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			// Rejected by the entity's validator: asking again will not help.
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s refused the scheduled backup: %s", req.Instance, ae.Error()),
				activities.ErrInvalidRequest, err)
		}
		var de *serviceerror.DeadlineExceeded
		var re *serviceerror.ResourceExhausted
		slow := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &de) || errors.As(err, &re) ||
			status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.ResourceExhausted
		if ctx.Err() != nil || !slow {
			return nil, err
		}
		activity.RecordHeartbeat(ctx, "waiting for "+workflows.InstanceWorkflowID(req.Instance)+" to answer")
	}
	activity.RecordHeartbeat(ctx, acc)
	res := &workflows.ScheduledResult{Instance: req.Instance, Kind: req.Ask.Type, WorkflowID: acc.WorkflowID, BackupID: acc.BackupID}
	poll := s.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	for {
		var out workflows.BackupResult
		wctx, cancel := context.WithTimeout(ctx, poll)
		err := s.Client.GetWorkflow(wctx, acc.WorkflowID, "").Get(wctx, &out)
		cancel()
		var nf *serviceerror.NotFound
		switch {
		case err == nil:
			res.Backup = &out
			return res, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded, errors.As(err, new(*serviceerror.DeadlineExceeded)), errors.As(err, &nf):
			// Still running, or still queued in the entity (not started).
			if nf != nil {
				if gone, qerr := s.notQueued(ctx, req.Instance, acc.BackupID); qerr == nil && gone {
					return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
						"backup %s of %s was accepted by %s but is neither queued nor running there, and its workflow %s does not exist",
						acc.BackupID, req.Instance, workflows.InstanceWorkflowID(req.Instance), acc.WorkflowID), activities.ErrInvalidRequest, err)
				}
				time.Sleep(min(poll, time.Second))
			}
			activity.RecordHeartbeat(ctx, acc)
		default:
			return nil, err // the backup failed: the scheduled run fails with its error
		}
	}
}

// askEntity asks the instance's entity for the backup by update-with-start
// (the entity is started if it is not running), waiting at most 20 s (a
// third of the activity's heartbeat timeout).
func (s *Scheduled) askEntity(ctx context.Context, updateID string, req workflows.ScheduledBackupAsk, acc *workflows.BackupAccepted) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := s.Client.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       workflows.InstanceWorkflowID(req.Instance),
		TaskQueue:                s.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    workflows.SearchAttributes(req.Instance, "instance", "", ""),
	}, workflows.InstanceWorkflowName, workflows.InstanceRequest{Instance: req.Instance})
	h, err := s.Client.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateID:     updateID,
			UpdateName:   workflows.RequestBackupUpdate,
			Args:         []any{req.Ask},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return fmt.Errorf("ask %s for a backup: %w", workflows.InstanceWorkflowID(req.Instance), err)
	}
	return h.Get(ctx, acc)
}

// notQueued asks the entity whether backupID is queued or running.
func (s *Scheduled) notQueued(ctx context.Context, instance, backupID string) (bool, error) {
	v, err := s.Client.QueryWorkflow(ctx, workflows.InstanceWorkflowID(instance), "", workflows.InstanceStatusQuery)
	if err != nil {
		return false, err
	}
	var st workflows.InstanceStatus
	if err := v.Get(&st); err != nil {
		return false, err
	}
	if st.Running != nil && st.Running.BackupID == backupID {
		return false, nil
	}
	for _, q := range st.Queue {
		if q.BackupID == backupID {
			return false, nil
		}
	}
	return true, nil
}
