package workflows

import (
	"errors"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/config"
)

// RestoreWorkflow restores one backup — with the chain it depends on — into
// a new datadir on an agent host and optionally starts a server on it. With
// a target it is a point-in-time restore: it picks the newest backup before
// the target, restores it and replays archived binlogs up to the target.
func RestoreWorkflow(ctx workflow.Context, req RestoreRequest) (*RestoreResult, error) {
	started := workflow.Now(ctx)
	pitr := !req.Target.IsZero()
	if req.Into != "" {
		return loadInto(ctx, req, started)
	}
	switch {
	case req.Instance == "":
		return nil, invalid("instance is required")
	case req.BackupID == "" && !pitr:
		return nil, invalid("backup_id or a target is required (see `strata ls %s`)", req.Instance)
	case req.TargetDir == "" || !filepath.IsAbs(req.TargetDir):
		return nil, invalid("target_dir must be an absolute path, got %q", req.TargetDir)
	case req.Start && (req.Port <= 0 || req.Port > 65535):
		return nil, invalid("port must be 1-65535 to start the restored server, got %d", req.Port)
	}

	// One target, however spelled ("/x/" is "/x").
	req.TargetDir = filepath.Clean(req.TargetDir)
	var cat *activities.Catalog
	var pitrPlan *activities.PITRPlan
	var notes []string
	cctx := catalogCtx(ctx)
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(cctx, cat.ResolveInstance, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &route); err != nil {
		return nil, err
	}
	if pitr {
		err := req.Target.Validate() //workflowcheck:ignore pure parsing: only go-mysql's logging reads the clock
		if err != nil {
			return nil, invalid("%v", err)
		}
		var plan activities.PITRPlan
		if err := workflow.ExecuteActivity(cctx, cat.PlanPITR, activities.PITRRequest{
			Instance: req.Instance, Target: req.Target, BackupID: req.BackupID, AllowFailedDrill: req.AllowFailedDrill,
		}).Get(ctx, &plan); err != nil {
			return nil, err
		}
		for _, n := range plan.Notes {
			workflow.GetLogger(ctx).Warn("point-in-time plan", "instance", req.Instance, "note", n)
		}
		req.BackupID = plan.BackupID
		pitrPlan = &plan
		notes = plan.Notes
	}
	var chain []activities.BackupSummary
	if err := workflow.ExecuteActivity(cctx, cat.ResolveChain, activities.BackupRef{Instance: req.Instance, BackupID: req.BackupID, AllowFailedDrill: req.AllowFailedDrill}).Get(ctx, &chain); err != nil {
		return nil, err
	}
	ids := make([]string, len(chain))
	for i, b := range chain {
		ids[i] = b.BackupID
	}
	host := route.Host
	if req.TargetHost != "" {
		host = req.TargetHost
	}
	queue := config.AgentTaskQueue(host)
	workflow.GetLogger(ctx).Info("restore", "host", host, "target_dir", req.TargetDir)

	// Fleet-wide limits (fleet.max_concurrent_restores,
	// storage.max_concurrent), as for backups.
	if workflow.GetVersion(ctx, "fleet-limits", workflow.DefaultVersion, 1) == 1 {
		release, err := acquirePermits(ctx, &route, activities.LimitKindRestore, "")
		if err != nil {
			return nil, err
		}
		defer release()
	}

	var agent *activities.Agent
	res := &RestoreResult{Instance: req.Instance, BackupID: req.BackupID, TargetHost: host, Backup: chain[len(chain)-1], Chain: ids, Started: started, Notes: notes}
	actx := agentCtx(ctx, &route, queue, route.BackupTimeout)
	restore := func() error {
		return workflow.ExecuteActivity(actx, agent.RestoreBackup, activities.RestoreParams{
			Instance: req.Instance, BackupID: req.BackupID, Chain: ids, TargetDir: req.TargetDir,
			AllowUnencrypted: req.AllowUnencrypted, MaxAttempts: int(retry.MaximumAttempts),
			Include: req.Include, Exclude: req.Exclude, Rename: req.Rename,
		}).Get(ctx, &res.Stats)
	}
	if err := restore(); err != nil {
		return nil, agentError(err, host, queue)
	}
	for attempt := 1; pitr; attempt++ {
		res.Replay = &activities.ReplayResult{}
		err := workflow.ExecuteActivity(actx, agent.ReplayBinlogs, activities.ReplayParams{
			Instance: req.Instance, StartFile: pitrPlan.StartFile, StartPos: pitrPlan.StartPos, Target: req.Target,
			TargetDir: req.TargetDir, AllowUnencrypted: req.AllowUnencrypted,
		}).Get(ctx, res.Replay)
		var ae *temporal.ApplicationError
		if err != nil && errors.As(err, &ae) && ae.Type() == activities.ErrReplayInterrupted && attempt < 3 {
			// An attempt died half-way through applying: restore the backup
			// again (the restore clears the half-replayed datadir) and replay.
			workflow.GetLogger(ctx).Warn("replay was interrupted; restoring again", "target_dir", req.TargetDir)
			if err := restore(); err != nil {
				return nil, agentError(err, host, queue)
			}
			continue
		}
		if err != nil {
			return nil, agentError(err, host, queue)
		}
		break
	}
	if req.Start {
		fl, _ := res.Backup.Flavor() // "" (MariaDB) when the backup tells none
		sctx := agentCtx(ctx, &route, queue, 30*time.Minute)
		res.Server = &activities.StartServerResult{}
		if err := workflow.ExecuteActivity(sctx, agent.StartServer, activities.StartServerParams{
			Instance: req.Instance, TargetDir: req.TargetDir, Port: req.Port, Flavor: fl,
		}).Get(ctx, res.Server); err != nil {
			return nil, agentError(err, host, queue)
		}
	}
	res.Finished = workflow.Now(ctx)
	res.Seconds = res.Finished.Sub(started).Seconds()
	return res, nil
}

// loadInto is a RestoreWorkflow with Into: logical backup BackupID of
// Instance is loaded into the running server of instance Into by Into's
// agent.
func loadInto(ctx workflow.Context, req RestoreRequest, started time.Time) (*RestoreResult, error) {
	switch {
	case req.Instance == "":
		return nil, invalid("instance is required")
	case req.BackupID == "":
		return nil, invalid("backup_id is required to load a logical backup into %s (see `strata ls %s`)", req.Into, req.Instance)
	case req.TargetDir != "" || req.Start || !req.Target.IsZero():
		return nil, invalid("into loads into a running server: give no target_dir, start or point-in-time target (for those, restore the logical backup into a new datadir with target_dir)")
	}
	var cat *activities.Catalog
	cctx := catalogCtx(ctx)
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(cctx, cat.ResolveInstance, activities.InstanceRequest{Instance: req.Into}).Get(ctx, &route); err != nil {
		return nil, err
	}
	var chain []activities.BackupSummary
	if err := workflow.ExecuteActivity(cctx, cat.ResolveChain, activities.BackupRef{Instance: req.Instance, BackupID: req.BackupID, AllowFailedDrill: req.AllowFailedDrill}).Get(ctx, &chain); err != nil {
		return nil, err
	}
	release, err := acquirePermits(ctx, &route, activities.LimitKindRestore, "")
	if err != nil {
		return nil, err
	}
	defer release()
	queue := config.AgentTaskQueue(route.Host)
	res := &RestoreResult{Instance: req.Instance, BackupID: req.BackupID, TargetHost: route.Host, Backup: chain[len(chain)-1], Chain: []string{req.BackupID}, Started: started}
	var agent *activities.Agent
	res.Load = &activities.LoadResult{}
	if err := workflow.ExecuteActivity(agentCtx(ctx, &route, queue, route.BackupTimeout), agent.LoadLogical, activities.LoadParams{
		Instance: req.Instance, BackupID: req.BackupID, Into: req.Into, Include: req.Include, Exclude: req.Exclude, Rename: req.Rename,
		Replace: req.Replace, Users: req.Users, Binlog: req.Binlog, AllowUnencrypted: req.AllowUnencrypted,
	}).Get(ctx, res.Load); err != nil {
		return nil, agentError(err, route.Host, queue)
	}
	res.Stats.Rows, res.Stats.Files = res.Load.Rows, res.Load.Files
	res.Finished = workflow.Now(ctx)
	res.Seconds = res.Finished.Sub(started).Seconds()
	return res, nil
}
