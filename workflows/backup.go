package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/logging"
	"github.com/strata-backup/strata/internal/manifest"
)

// BackupIDFormat is how default backup ids are derived from the start time.
const BackupIDFormat = "20060102T150405Z"

// PreflightChange is the workflow.GetVersion change id of the pre-flight
// check in BackupWorkflow: histories without its marker (recorded before
// it) replay without the check.
const PreflightChange = "backup-preflight"

// BackupWorkflow takes one backup of one instance on the agent that owns it.
// The catalog plans its base (the parent and from-LSN of an incremental or a
// differential) from the repository, so agents keep no state.
func BackupWorkflow(ctx workflow.Context, req BackupRequest) (*BackupResult, error) {
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	if req.Type == "" {
		req.Type = manifest.TypeFull
	}
	if !manifest.IsBackupType(req.Type) {
		return nil, invalid("backup type %q is not one of %s", req.Type, manifest.BackupTypes)
	}
	if req.BackupID == "" {
		req.BackupID = workflow.Now(ctx).UTC().Format(BackupIDFormat)
	}
	logging.AddWorkflowFields(ctx, "backup_id", req.BackupID) // on every later line, also when the id was chosen here
	log := workflow.GetLogger(ctx)

	var cat *activities.Catalog
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.ResolveInstance, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &route); err != nil {
		return nil, err
	}
	var agent *activities.Agent
	// The pre-flight check (version 1) runs on the agent's light queue (the
	// one of its binlog archivers), so that waiting for the load to pass
	// holds none of the agent's backup/restore slots (agent.max_concurrent).
	var pf *activities.PreflightResult
	if workflow.GetVersion(ctx, PreflightChange, workflow.DefaultVersion, 1) >= 1 {
		timeout := route.PreflightTimeout
		if timeout <= 0 {
			timeout = route.BackupTimeout
		}
		pctx := agentCtx(ctx, &route, route.ArchiveTaskQueue, timeout)
		if err := workflow.ExecuteActivity(pctx, agent.Preflight, activities.PreflightParams{Instance: req.Instance}).Get(ctx, &pf); err != nil {
			return nil, agentError(err, route.Host, route.ArchiveTaskQueue)
		}
	}
	var plan activities.BackupPlan
	if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.PlanBackup, activities.PlanRequest{
		Instance: req.Instance, Type: req.Type, AutoFull: req.AutoFull,
	}).Get(ctx, &plan); err != nil {
		return nil, err
	}
	log.Info("backup", "host", route.Host,
		"type", plan.Type, "parent", plan.ParentID, "note", plan.Note)

	// Fleet-wide limits (fleet.max_concurrent_backups,
	// storage.max_concurrent): wait for a permit of each before the agent
	// starts; backups recorded before the limits replay without.
	if workflow.GetVersion(ctx, "fleet-limits", workflow.DefaultVersion, 1) == 1 {
		release, err := acquirePermits(ctx, &route, activities.LimitKindBackup, req.BackupID)
		if err != nil {
			return nil, err
		}
		defer release()
	}

	var sum activities.BackupSummary
	actx := agentCtx(ctx, &route, route.TaskQueue, route.BackupTimeout)
	err := workflow.ExecuteActivity(actx, agent.Backup, activities.BackupParams{
		Instance: req.Instance, BackupID: req.BackupID, Type: plan.Type, ParentID: plan.ParentID, FromLSN: plan.FromLSN,
	}).Get(ctx, &sum)
	if err != nil {
		return nil, agentError(err, route.Host, route.TaskQueue)
	}
	res := &BackupResult{BackupSummary: sum, Host: route.Host, ChainLength: plan.ChainLength, Note: plan.Note, Preflight: pf}
	if sum.DurationSeconds > 0 {
		res.ThroughputMBps = float64(sum.RawSize) / 1e6 / sum.DurationSeconds
	}
	return res, nil
}
