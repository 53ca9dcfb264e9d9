package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ScheduledWorkflowName is the workflow every Strata Schedule starts.
const ScheduledWorkflowName = "ScheduledWorkflow"

// RequestScheduledBackupActivity is the worker's activity that asks the
// instance's entity workflow for a backup (update-with-start) and waits for
// the backup's result, heartbeating.
const RequestScheduledBackupActivity = "RequestScheduledBackup"

// ScheduledRequest is the input a Schedule gives ScheduledWorkflow.
type ScheduledRequest struct {
	Instance string `json:"instance"`
	// Kind is the schedule's kind: full, incremental, verify, prune or drill.
	Kind string `json:"kind"`
}

// ScheduledBackupAsk is the input of RequestScheduledBackupActivity.
type ScheduledBackupAsk struct {
	Instance string    `json:"instance"`
	Ask      BackupAsk `json:"ask"`
}

// ScheduledResult reports what a scheduled run did.
type ScheduledResult struct {
	Instance   string `json:"instance"`
	Kind       string `json:"kind"`
	WorkflowID string `json:"workflow_id"`
	BackupID   string `json:"backup_id,omitempty"`
	// Backup is the result of a full or incremental run.
	Backup *BackupResult `json:"backup,omitempty"`
	// Verify and Retention are the results of verify and prune runs.
	Verify    *VerifyResult    `json:"verify,omitempty"`
	Retention *RetentionResult `json:"retention,omitempty"`
	// Drill is the result of a drill run.
	Drill *DrillResult `json:"drill,omitempty"`
}

// ScheduledWorkflow is started by a Strata Schedule (id ScheduleID). A
// full or incremental run asks the instance's entity workflow for the
// backup, through the worker's RequestScheduledBackup activity, and lasts
// until the backup finished, so that the Schedule's overlap policy (skip)
// skips a run while the previous one is still going. A verify run starts
// VerifyWorkflow, a prune run RetentionWorkflow and a drill run
// DrillWorkflow, as children.
func ScheduledWorkflow(ctx workflow.Context, req ScheduledRequest) (*ScheduledResult, error) {
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	res := &ScheduledResult{Instance: req.Instance, Kind: req.Kind}
	now := workflow.Now(ctx)
	switch req.Kind {
	case "full", "incremental", "logical":
		ask := ScheduledBackupAsk{Instance: req.Instance, Ask: BackupAsk{
			Type:     req.Kind,
			AutoFull: req.Kind == "incremental",
			// One id per run: a retried activity joins the backup its
			// first attempt asked for instead of queueing another.
			BackupID:    now.UTC().Format(BackupIDFormat),
			RequestedBy: "schedule/" + req.Kind,
			Reason:      "Temporal Schedule " + ScheduleID(req.Instance, req.Kind),
		}}
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			// A backup may queue behind others and take a day.
			StartToCloseTimeout: 72 * time.Hour,
			HeartbeatTimeout:    time.Minute,
			RetryPolicy:         retry,
		})
		var out ScheduledResult
		if err := workflow.ExecuteActivity(actx, RequestScheduledBackupActivity, ask).Get(ctx, &out); err != nil {
			return nil, err
		}
		res.WorkflowID, res.BackupID, res.Backup = out.WorkflowID, out.BackupID, out.Backup
	case "verify":
		res.WorkflowID = VerifyWorkflowID(req.Instance, now)
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: res.WorkflowID, TypedSearchAttributes: SearchAttributes(req.Instance, "verify", "", ""),
		})
		if err := workflow.ExecuteChildWorkflow(cctx, VerifyWorkflowName, VerifyRequest{Instance: req.Instance}).Get(ctx, &res.Verify); err != nil {
			return nil, err
		}
	case "prune":
		res.WorkflowID = RetentionWorkflowID(req.Instance)
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: res.WorkflowID, TypedSearchAttributes: SearchAttributes(req.Instance, "retention", "", ""),
			// A prune started by hand is running: this run is not needed.
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		})
		err := workflow.ExecuteChildWorkflow(cctx, RetentionWorkflowName, RetentionRequest{Instance: req.Instance}).Get(ctx, &res.Retention)
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			workflow.GetLogger(ctx).Info("a retention run of the instance is already running; skipping")
			return res, nil
		}
		if err != nil {
			return nil, err
		}
	case "drill":
		// Before drills existed a drill run failed at once as an unknown kind.
		if workflow.GetVersion(ctx, "scheduled-drill", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return nil, invalid("kind %q has no scheduled work: use full, incremental, verify or prune", req.Kind)
		}
		drillID := now.UTC().Format(BackupIDFormat)
		res.WorkflowID = DrillWorkflowID(req.Instance, drillID)
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: res.WorkflowID, TypedSearchAttributes: SearchAttributes(req.Instance, KindDrill, "", ""),
		})
		if err := workflow.ExecuteChildWorkflow(cctx, DrillWorkflowName, DrillRequest{Instance: req.Instance, DrillID: drillID}).Get(ctx, &res.Drill); err != nil {
			return nil, err
		}
		res.BackupID = res.Drill.Report.BackupID
	default:
		return nil, invalid("kind %q has no scheduled work: use full, incremental, verify, prune or drill", req.Kind)
	}
	return res, nil
}

// ScheduledWorkflowID is the id a Schedule of kind gives the workflows it
// starts (Temporal appends the scheduled time).
func ScheduledWorkflowID(instance, kind string) string {
	return fmt.Sprintf("scheduled/%s/%s", instance, kind)
}
