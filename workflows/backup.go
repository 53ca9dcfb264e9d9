package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/manifest"
)

// BackupIDFormat is how default backup ids are derived from the start time.
const BackupIDFormat = "20060102T150405Z"

// BackupWorkflow takes one backup of one instance on the agent that owns it.
// The catalog plans its base (the parent and from-LSN of an incremental or a
// differential) from the repository, so agents keep no state.
func BackupWorkflow(ctx workflow.Context, req BackupRequest) (*BackupResult, error) {
	log := workflow.GetLogger(ctx)
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	if req.Type == "" {
		req.Type = manifest.TypeFull
	}
	switch req.Type {
	case manifest.TypeFull, manifest.TypeIncremental, manifest.TypeDifferential:
	default:
		return nil, invalid("backup type %q is not one of full, incremental, differential", req.Type)
	}
	if req.BackupID == "" {
		req.BackupID = workflow.Now(ctx).UTC().Format(BackupIDFormat)
	}

	var cat *activities.Catalog
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.ResolveInstance, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &route); err != nil {
		return nil, err
	}
	var plan activities.BackupPlan
	if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.PlanBackup, activities.PlanRequest{
		Instance: req.Instance, Type: req.Type, AutoFull: req.AutoFull,
	}).Get(ctx, &plan); err != nil {
		return nil, err
	}
	log.Info("backup", "instance", req.Instance, "backup_id", req.BackupID, "host", route.Host,
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

	var agent *activities.Agent
	var sum activities.BackupSummary
	actx := agentCtx(ctx, &route, route.TaskQueue, route.BackupTimeout)
	err := workflow.ExecuteActivity(actx, agent.Backup, activities.BackupParams{
		Instance: req.Instance, BackupID: req.BackupID, Type: plan.Type, ParentID: plan.ParentID, FromLSN: plan.FromLSN,
	}).Get(ctx, &sum)
	if err != nil {
		return nil, agentError(err, route.Host, route.TaskQueue)
	}
	res := &BackupResult{BackupSummary: sum, Host: route.Host, ChainLength: plan.ChainLength, Note: plan.Note}
	if sum.DurationSeconds > 0 {
		res.ThroughputMBps = float64(sum.RawSize) / 1e6 / sum.DurationSeconds
	}
	return res, nil
}
