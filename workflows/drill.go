package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/flavor"
)

// DrillWorkflowName is the registered name of DrillWorkflow.
const DrillWorkflowName = "DrillWorkflow"

// DrillRequest asks for one restore drill of an instance.
type DrillRequest struct {
	Instance string `json:"instance"`
	// BackupID drills this backup; empty: the newest backup whose chain
	// has no failed drill.
	BackupID string `json:"backup_id,omitempty"`
	// Target makes it a point-in-time drill (the base backup is the newest
	// before it, or BackupID).
	Target binlog.Target `json:"target,omitempty"`
	// BackupOnly drills the backup alone: no replay to the newest archived
	// transaction, which a drill without a target does by default when the
	// archive reaches past the backup (config drill.point_in_time).
	BackupOnly bool `json:"backup_only,omitempty"`
	// DrillID defaults to the workflow's start time, e.g. 20261124T084500Z.
	DrillID string `json:"drill_id,omitempty"`
}

// DrillResult is the drill's report and where it was written.
type DrillResult struct {
	Report    drill.Report `json:"report"`
	ReportKey string       `json:"report_key"`
	Notes     []string     `json:"notes,omitempty"`
}

// drillRun carries one drill's state between its phases.
type drillRun struct {
	ctx   workflow.Context
	rep   *drill.Report
	phase string // the phase running, for the failure
	chunk string // a corrupt chunk's key
}

// timed runs one phase and records its time.
func (d *drillRun) timed(phase string, f func() error) error {
	d.phase = phase
	t0 := workflow.Now(d.ctx)
	err := f()
	d.rep.Phases = append(d.rep.Phases, drill.PhaseTime{Phase: phase, Seconds: workflow.Now(d.ctx).Sub(t0).Seconds()})
	return err
}

// DrillWorkflow restores a backup chain (and, for a point-in-time drill,
// replays the binlog archive to a target) onto a scratch server on a drill
// agent, verifies it, measures RTO and RPO, tears the scratch server down
// (also on failure and cancel), writes the drill report to the repository,
// and fails with a DrillFailed error, naming the phase, when the drill
// failed. It calls the restore activities itself rather than through a
// child RestoreWorkflow, so that each phase is timed and the teardown
// covers every one of them.
func DrillWorkflow(ctx workflow.Context, req DrillRequest) (*DrillResult, error) {
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	info := workflow.GetInfo(ctx)
	started := workflow.Now(ctx)
	if req.DrillID == "" {
		req.DrillID = started.UTC().Format(BackupIDFormat)
	}
	if !req.Target.IsZero() {
		err := req.Target.Validate() //workflowcheck:ignore pure parsing: only go-mysql's logging reads the clock
		if err != nil {
			return nil, invalid("%v", err)
		}
		if req.BackupOnly {
			return nil, invalid("backup_only and a target exclude each other: drop one")
		}
	}
	log := workflow.GetLogger(ctx)
	var cat *activities.Catalog
	var agent *activities.Agent
	cctx := catalogCtx(ctx)
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(cctx, cat.ResolveInstance, activities.InstanceRequest{Instance: req.Instance}).Get(ctx, &route); err != nil {
		return nil, err
	}
	rep := &drill.Report{
		FormatVersion: drill.FormatVersion, DrillID: req.DrillID, Instance: req.Instance,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID, Started: started,
	}
	if !req.Target.IsZero() {
		rep.Target = req.Target.String()
	}
	d := &drillRun{ctx: ctx, rep: rep}
	res := &DrillResult{ReportKey: drill.ReportKey(req.Instance, req.DrillID)}

	var plan activities.DrillPlan
	var scratch drill.Scratch
	var server activities.StartServerResult
	var queue string
	runErr := func() error {
		if err := workflow.ExecuteActivity(cctx, cat.PlanDrill, activities.DrillPlanRequest{
			Instance: req.Instance, BackupID: req.BackupID, Target: req.Target, BackupOnly: req.BackupOnly, DrillID: req.DrillID,
		}).Get(ctx, &plan); err != nil {
			return err
		}
		res.Notes = plan.Notes
		rep.BackupID, rep.Chain, rep.Host = plan.Backup.BackupID, plan.Chain, plan.Host
		if !plan.Target.IsZero() {
			rep.Target = plan.Target.String()
		}
		for _, n := range plan.Notes {
			log.Info("drill plan", "instance", req.Instance, "note", n)
		}
		queue = config.AgentTaskQueue(plan.Host)
		release, err := acquirePermits(ctx, &route, activities.LimitKindRestore, "")
		if err != nil {
			return err
		}
		defer release()
		actx := agentCtx(ctx, &route, queue, route.BackupTimeout)
		ref := activities.PrepareDrillParams{Instance: req.Instance, DrillID: req.DrillID}
		if err := workflow.ExecuteActivity(agentCtx(ctx, &route, queue, 10*time.Minute), agent.PrepareDrill, ref).Get(ctx, &scratch); err != nil {
			return agentError(err, plan.Host, queue)
		}
		rep.Datadir = scratch.Datadir
		restore := func() error {
			var stats activities.RestoreStats
			return workflow.ExecuteActivity(actx, agent.RestoreBackup, activities.RestoreParams{
				Instance: req.Instance, BackupID: plan.Backup.BackupID, Chain: plan.Chain, TargetDir: scratch.Datadir,
				MaxAttempts: int(retry.MaximumAttempts),
			}).Get(ctx, &stats)
		}
		if err := d.timed(drill.PhaseRestore, restore); err != nil {
			var ae *temporal.ApplicationError
			var cc activities.CorruptChunk
			if errors.As(err, &ae) && ae.HasDetails() && ae.Details(&cc) == nil {
				d.chunk = cc.Key
			}
			var kn activities.KeyNotHeld
			if ae != nil && ae.Type() == activities.ErrDecryptFailed && ae.HasDetails() && ae.Details(&kn) == nil && kn.Agent != "" {
				rep.KeyNotHeld = true
			}
			return agentError(err, plan.Host, queue)
		}
		var replay activities.ReplayResult
		if plan.PITR != nil {
			err := d.timed(drill.PhaseReplay, func() error {
				for attempt := 1; ; attempt++ {
					err := workflow.ExecuteActivity(actx, agent.ReplayBinlogs, activities.ReplayParams{
						Instance: req.Instance, StartFile: plan.PITR.StartFile, StartPos: plan.PITR.StartPos, Target: plan.Target,
						TargetDir: scratch.Datadir,
					}).Get(ctx, &replay)
					var ae *temporal.ApplicationError
					if err != nil && errors.As(err, &ae) && ae.Type() == activities.ErrReplayInterrupted && attempt < 3 {
						if err := restore(); err != nil {
							return err
						}
						continue
					}
					return err
				}
			})
			if err != nil {
				return agentError(err, plan.Host, queue)
			}
		}
		startFlavor, _ := plan.Backup.Flavor() // "" (MariaDB) when the backup tells none
		if err := d.timed(drill.PhaseStart, func() error {
			return workflow.ExecuteActivity(agentCtx(ctx, &route, queue, 30*time.Minute), agent.StartServer, activities.StartServerParams{
				Instance: req.Instance, TargetDir: scratch.Datadir, PickPort: true, Flavor: startFlavor,
			}).Get(ctx, &server)
		}); err != nil {
			return agentError(err, plan.Host, queue)
		}
		rep.Port = server.Port
		var ver activities.DrillVerifyResult
		if err := d.timed(drill.PhaseVerify, func() error {
			return workflow.ExecuteActivity(agentCtx(ctx, &route, queue, route.BackupTimeout), agent.VerifyDrill, activities.DrillVerifyParams{
				Instance: req.Instance, BackupID: plan.Backup.BackupID, Datadir: scratch.Datadir, Port: server.Port,
				CompareSums: plan.CompareSums, Replayed: plan.PITR != nil, HeartbeatTable: plan.HeartbeatTable,
			}).Get(ctx, &ver)
		}); err != nil {
			return agentError(err, plan.Host, queue)
		}
		verified := workflow.Now(ctx)
		rep.TablesChecked, rep.TablesCompared, rep.Rows = ver.TablesChecked, ver.TablesCompared, ver.Rows
		rep.Problems = append(rep.Problems, ver.Problems...)
		rep.GotGTIDSet = ver.GotGTIDSet
		if ver.TablesChecked == 0 {
			res.Notes = append(res.Notes, "the restored server has no user table: the drill checked that it starts, and no data")
		}
		// The sets are the backup's flavor's (its manifest's), whatever
		// their shape: a set of the other shape is a problem.
		if fl, err := plan.Backup.Flavor(); err != nil {
			rep.WantGTIDSet = plan.Backup.GTIDSet
			rep.Problems = append(rep.Problems, "executed GTID set not checked: "+err.Error())
		} else {
			rep.WantGTIDSet = wantGTID(fl, &plan, &replay, rep) //workflowcheck:ignore pure GTID arithmetic (sorted output)
			if rep.WantGTIDSet != "" || rep.GotGTIDSet != "" {
				same, err := drill.SameGTID(fl, rep.WantGTIDSet, rep.GotGTIDSet) //workflowcheck:ignore pure GTID comparison
				switch {
				case err != nil:
					rep.Problems = append(rep.Problems, fmt.Sprintf("executed GTID set %q, want %q: %v", rep.GotGTIDSet, rep.WantGTIDSet, err))
				case !same:
					rep.Problems = append(rep.Problems, fmt.Sprintf("executed GTID set is %q, want %q", rep.GotGTIDSet, rep.WantGTIDSet))
				}
			}
		}
		// RPO: the target's time minus the time of the last event restored.
		rep.TargetTime = plan.Backup.ConsistentAt
		rep.LastEventTime = plan.Backup.ConsistentAt
		if plan.PITR != nil {
			rep.TargetTime = replay.LastTime
			if !plan.Target.Time.IsZero() {
				rep.TargetTime = plan.Target.Time
			}
			if !replay.LastTime.IsZero() {
				rep.LastEventTime = replay.LastTime
			}
		}
		if !ver.HeartbeatAt.IsZero() {
			rep.LastEventTime, rep.RPOExact = ver.HeartbeatAt, true
		} else if ver.HeartbeatNote != "" {
			res.Notes = append(res.Notes, "RPO is not exact: "+ver.HeartbeatNote)
		}
		if !rep.TargetTime.IsZero() && rep.TargetTime.After(rep.LastEventTime) {
			rep.RPOSeconds = rep.TargetTime.Sub(rep.LastEventTime).Seconds()
		}
		if len(rep.Problems) > 0 {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%d verification problem(s), first: %s", len(rep.Problems), rep.Problems[0]), activities.ErrVerificationFailed, nil)
		}
		rep.RTOSeconds = verified.Sub(started).Seconds()
		return nil
	}()

	// A drill id whose report exists (PlanDrill refuses it): nothing ran,
	// and the report there is another drill's, which stays.
	var taken *temporal.ApplicationError
	if errors.As(runErr, &taken) && taken.Type() == activities.ErrDrillIDTaken {
		return nil, runErr
	}
	// Teardown and the report run on a disconnected context: a cancelled
	// drill still removes its scratch server and records that it failed.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	failedPhase := d.phase
	// Whenever a drill agent was chosen: a PrepareDrill that failed or timed
	// out may still have created the dir (the teardown of none is a no-op).
	if queue != "" {
		d.ctx = dctx
		terr := d.timed(drill.PhaseTeardown, func() error {
			tctx := agentCtx(dctx, &route, queue, 10*time.Minute)
			return workflow.ExecuteActivity(tctx, agent.TeardownDrill, activities.PrepareDrillParams{Instance: req.Instance, DrillID: req.DrillID}).Get(dctx, nil)
		})
		rep.TornDown = terr == nil
		if terr != nil {
			log.Error("drill teardown failed: the scratch server or its files may be left on the drill host", "host", plan.Host, "dir", scratch.Dir, "error", terr)
			if runErr == nil {
				runErr, failedPhase = terr, drill.PhaseTeardown
			}
		}
	}
	rep.Finished = workflow.Now(dctx)
	rep.Result = drill.ResultPassed
	if runErr != nil {
		rep.Result, rep.RTOSeconds = drill.ResultFailed, 0
		if plan.Backup.BackupID != "" {
			rep.FailedPhase = failedPhase
		}
		rep.CorruptChunk = d.chunk
		var ae *temporal.ApplicationError
		if errors.As(runErr, &ae) {
			rep.ErrorType = ae.Type()
		}
		rep.Error = runErr.Error()
		if rep.FailedPhase != "" {
			rep.Error = rep.FailedPhase + ": " + rep.Error
		}
		if temporal.IsCanceledError(runErr) {
			rep.Error = "cancelled"
			if rep.FailedPhase != "" {
				rep.Error += " during " + rep.FailedPhase
			}
		}
	}
	res.Report = *rep
	if err := workflow.ExecuteActivity(catalogCtx(dctx), cat.WriteDrillReport, *rep).Get(dctx, nil); err != nil {
		log.Error("could not write the drill report", "key", res.ReportKey, "error", err)
		if runErr == nil {
			return nil, err
		}
	}
	if runErr == nil {
		log.Info("drill passed", "instance", req.Instance, "backup_id", rep.BackupID, "rto_seconds", rep.RTOSeconds, "rpo_seconds", rep.RPOSeconds)
		return res, nil
	}
	if temporal.IsCanceledError(runErr) {
		return nil, runErr
	}
	msg := fmt.Sprintf("drill %s of %s failed", req.DrillID, req.Instance)
	if rep.FailedPhase != "" {
		msg += " in phase " + rep.FailedPhase
	}
	if rep.BackupID != "" {
		msg += " (backup " + rep.BackupID + ")"
	}
	if d.chunk != "" {
		msg += ": corrupt chunk " + d.chunk
	}
	msg += "; report " + res.ReportKey
	return nil, temporal.NewNonRetryableApplicationError(msg, activities.ErrDrillFailed, runErr,
		activities.DrillFailure{DrillID: req.DrillID, Phase: rep.FailedPhase, Chunk: d.chunk, ReportKey: res.ReportKey})
}

// wantGTID is the GTID position the restored data must have: the backup's,
// with the replayed transactions on top (the target GTID, else the
// archive's last transaction at the target, else the last transaction the
// replay applied).
func wantGTID(fl flavor.Name, plan *activities.DrillPlan, replay *activities.ReplayResult, rep *drill.Report) string {
	want := plan.Backup.GTIDSet
	var top string
	switch {
	case plan.PITR == nil:
	case plan.Target.GTID != "":
		top = plan.Target.GTID
	case plan.TargetGTID != "":
		// The archive's last transaction at the target: a replay that
		// stopped short must not set its own bar.
		top = plan.TargetGTID
	default:
		top = replay.LastGTID
	}
	if top == "" {
		return want
	}
	m, err := drill.WantGTID(fl, want, top)
	if err != nil {
		rep.Problems = append(rep.Problems, "want GTID set: "+err.Error())
		return want
	}
	return m
}
