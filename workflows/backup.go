package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/manifest"
)

// BackupIDFormat is how default backup ids are derived from the start time.
const BackupIDFormat = "20060102T150405Z"

// BackupWorkflow takes one backup of one instance on the agent that owns it.
func BackupWorkflow(ctx workflow.Context, req BackupRequest) (*BackupResult, error) {
	log := workflow.GetLogger(ctx)
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	if req.Type == "" {
		req.Type = manifest.TypeFull
	}
	if req.Type != manifest.TypeFull {
		return nil, invalid("backup type %q is not supported; use full", req.Type)
	}
	if req.BackupID == "" {
		req.BackupID = workflow.Now(ctx).UTC().Format(BackupIDFormat)
	}

	var cat *activities.Catalog
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.ResolveInstance, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &route); err != nil {
		return nil, err
	}
	log.Info("backup", "instance", req.Instance, "backup_id", req.BackupID, "host", route.Host)

	var agent *activities.Agent
	var sum activities.BackupSummary
	actx := agentCtx(ctx, &route, route.TaskQueue, route.BackupTimeout)
	err := workflow.ExecuteActivity(actx, agent.Backup, activities.BackupParams{
		Instance: req.Instance, BackupID: req.BackupID, Type: req.Type,
	}).Get(ctx, &sum)
	if err != nil {
		return nil, agentError(err, route.Host, route.TaskQueue)
	}
	res := &BackupResult{BackupSummary: sum, Host: route.Host}
	if sum.DurationSeconds > 0 {
		res.ThroughputMBps = float64(sum.RawSize) / 1e6 / sum.DurationSeconds
	}
	return res, nil
}
