package workflows

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/tablecopy"
)

// TableRestoreWorkflowName is the registered name of TableRestoreWorkflow.
const TableRestoreWorkflowName = "TableRestoreWorkflow"

// Phases of a table restore (TableRestoreResult.Phases), besides the
// drill's restore, replay, start and teardown.
const (
	PhaseCheck  = "check"
	PhasePlan   = "plan"
	PhaseImport = "import"
)

// TableRestoreRequest asks for one table of a backup (at a point in time,
// with a target) to be brought back into a live server.
type TableRestoreRequest struct {
	// Instance is the backup's instance.
	Instance string `json:"instance"`
	// Table is schema.table in the backup.
	Table string `json:"table"`
	// Into is the live instance the table goes into; default Instance.
	Into string `json:"into,omitempty"`
	// As is the table's name on the live server; default Table.
	As string `json:"as,omitempty"`
	// Replace replaces a table of that name on the live server; without
	// it such a table is never touched and the restore is refused.
	Replace bool `json:"replace,omitempty"`
	// BackupID restores from this backup (with a target: the base
	// backup); default the newest (before the target) whose chain has no
	// failed drill.
	BackupID string `json:"backup_id,omitempty"`
	// Target rolls the backup forward with the binlog archive to it; none:
	// the table as of the backup's consistent point.
	Target binlog.Target `json:"target,omitempty"`
	// RestoreID defaults to the workflow's start time, e.g.
	// 20261124T084500Z.
	RestoreID string `json:"restore_id,omitempty"`
}

// TableRestoreResult is what the table restore did.
type TableRestoreResult struct {
	Instance  string `json:"instance"`
	Into      string `json:"into"`
	RestoreID string `json:"restore_id"`
	// Host is the live instance's host, where the scratch server ran.
	Host     string   `json:"host"`
	BackupID string   `json:"backup_id"`
	Chain    []string `json:"chain"`
	// Target is the point asked for; Point what the table is as of (the
	// target and the last transaction replayed, or the backup's
	// consistent point).
	Target string `json:"target,omitempty"`
	Point  string `json:"point"`
	// Replay is set when the archive was replayed to the target.
	Replay *activities.ReplayResult `json:"replay,omitempty"`
	// Import is the copy: method, rows and checksums of source and
	// destination, bytes, its own steps' times.
	Import   tablecopy.Result  `json:"import"`
	Phases   []drill.PhaseTime `json:"phases"`
	TornDown bool              `json:"torn_down"`
	Notes    []string          `json:"notes,omitempty"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Seconds  float64           `json:"seconds"`
}

// restoreIDRE is what a scratch directory's name may be
// (drill.ScratchFor).
var restoreIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$`)

// TableRestoreWorkflow brings one table back from a physical backup into
// a live server: it checks on the live server that the destination name is
// free (before any restore work), restores the backup chain onto a
// scratch server on the live instance's own host (the table's files move
// locally, from one datadir to the other), replays the binlog archive to
// the target, starts the scratch server on a free port, has the agent
// import the table into the live server under its new name (a moved
// tablespace, or the logical copy), verified by row count and CHECKSUM
// TABLE; and tears the scratch server down, also on failure and cancel.
// The drill's activities do the restore; PlanDrill plans it.
func TableRestoreWorkflow(ctx workflow.Context, req TableRestoreRequest) (*TableRestoreResult, error) {
	started := workflow.Now(ctx)
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	src, err := tablecopy.ParseTableName(req.Table)
	if err != nil {
		return nil, invalid("table: %v", err)
	}
	dst := src
	if req.As != "" {
		if dst, err = tablecopy.ParseTableName(req.As); err != nil {
			return nil, invalid("as: %v", err)
		}
	}
	if req.Into == "" {
		req.Into = req.Instance
	}
	if req.RestoreID == "" {
		req.RestoreID = started.UTC().Format(BackupIDFormat)
	}
	if !restoreIDRE.MatchString(req.RestoreID) {
		return nil, invalid("restore id %q must be letters, digits, '.', '_' or '-'", req.RestoreID)
	}
	if !req.Target.IsZero() {
		err := req.Target.Validate() //workflowcheck:ignore pure parsing: only go-mysql's logging reads the clock
		if err != nil {
			return nil, invalid("%v", err)
		}
	}
	log := workflow.GetLogger(ctx)
	var cat *activities.Catalog
	var agent *activities.Agent
	cctx := catalogCtx(ctx)
	var route activities.InstanceRoute
	if err := workflow.ExecuteActivity(cctx, cat.ResolveInstance, activities.InstanceRequest{Instance: req.Into}).Get(ctx, &route); err != nil {
		return nil, err
	}
	res := &TableRestoreResult{Instance: req.Instance, Into: req.Into, RestoreID: req.RestoreID, Host: route.Host, Started: started}
	if !req.Target.IsZero() {
		res.Target = req.Target.String()
	}
	queue := config.AgentTaskQueue(route.Host)
	phase := ""
	timed := func(ctx workflow.Context, name string, f func() error) error {
		phase = name
		t0 := workflow.Now(ctx)
		err := f()
		res.Phases = append(res.Phases, drill.PhaseTime{Phase: name, Seconds: workflow.Now(ctx).Sub(t0).Seconds()})
		return err
	}
	// The scratch server's directory: <agent.scratch_dir>/drills/<instance>/table-<id>.
	ref := activities.PrepareDrillParams{Instance: req.Instance, DrillID: "table-" + req.RestoreID}
	prepared := false
	runErr := func() error {
		if err := timed(ctx, PhaseCheck, func() error {
			var chk activities.TableCheckResult
			return workflow.ExecuteActivity(agentCtx(ctx, &route, queue, 5*time.Minute), agent.CheckTableDestination,
				activities.TableCheckParams{Into: req.Into, Dest: dst, Replace: req.Replace}).Get(ctx, &chk)
		}); err != nil {
			return agentError(err, route.Host, queue)
		}
		var plan activities.DrillPlan
		phase = PhasePlan
		if err := workflow.ExecuteActivity(cctx, cat.PlanDrill, activities.DrillPlanRequest{
			Instance: req.Instance, BackupID: req.BackupID, Target: req.Target, BackupOnly: req.Target.IsZero(),
		}).Get(ctx, &plan); err != nil {
			return err
		}
		res.BackupID, res.Chain = plan.Backup.BackupID, plan.Chain
		for _, n := range plan.Notes {
			// The backups skipped for a failed drill; the drill's notes on
			// table sums say nothing of a table restore.
			if strings.HasPrefix(n, "skipped: ") {
				res.Notes = append(res.Notes, n)
				log.Warn("table restore plan", "instance", req.Instance, "note", n)
			}
		}
		release, err := acquirePermits(ctx, &route, activities.LimitKindRestore, "")
		if err != nil {
			return err
		}
		defer release()
		actx := agentCtx(ctx, &route, queue, route.BackupTimeout)
		var scratch drill.Scratch
		prepared = true
		if err := workflow.ExecuteActivity(agentCtx(ctx, &route, queue, 10*time.Minute), agent.PrepareDrill, ref).Get(ctx, &scratch); err != nil {
			return agentError(err, route.Host, queue)
		}
		restore := func() error {
			var stats activities.RestoreStats
			return workflow.ExecuteActivity(actx, agent.RestoreBackup, activities.RestoreParams{
				Instance: req.Instance, BackupID: plan.Backup.BackupID, Chain: plan.Chain, TargetDir: scratch.Datadir,
				MaxAttempts: int(retry.MaximumAttempts),
			}).Get(ctx, &stats)
		}
		if err := timed(ctx, drill.PhaseRestore, restore); err != nil {
			return agentError(err, route.Host, queue)
		}
		res.Point = fmt.Sprintf("backup %s (binlog %s:%d, GTID %s)", plan.Backup.BackupID, plan.Backup.BinlogFile, plan.Backup.BinlogPos, plan.Backup.GTIDSet)
		if plan.PITR != nil {
			res.Replay = &activities.ReplayResult{}
			err := timed(ctx, drill.PhaseReplay, func() error {
				for attempt := 1; ; attempt++ {
					err := workflow.ExecuteActivity(actx, agent.ReplayBinlogs, activities.ReplayParams{
						Instance: req.Instance, StartFile: plan.PITR.StartFile, StartPos: plan.PITR.StartPos, Target: plan.Target,
						TargetDir: scratch.Datadir,
					}).Get(ctx, res.Replay)
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
				return agentError(err, route.Host, queue)
			}
			res.Point = fmt.Sprintf("%s (last transaction replayed %s at %s)", plan.Target, res.Replay.LastGTID, res.Replay.LastTime.UTC().Format(time.RFC3339))
		}
		fl, _ := plan.Backup.Flavor() // "" (MariaDB) when the backup tells none
		var server activities.StartServerResult
		if err := timed(ctx, drill.PhaseStart, func() error {
			return workflow.ExecuteActivity(agentCtx(ctx, &route, queue, 30*time.Minute), agent.StartServer, activities.StartServerParams{
				Instance: req.Instance, TargetDir: scratch.Datadir, PickPort: true, Flavor: fl,
			}).Get(ctx, &server)
		}); err != nil {
			return agentError(err, route.Host, queue)
		}
		if err := timed(ctx, PhaseImport, func() error {
			return workflow.ExecuteActivity(actx, agent.ImportTable, activities.TableImportParams{
				Instance: req.Instance, Into: req.Into, RestoreID: req.RestoreID, Source: src, Dest: dst, Replace: req.Replace,
				ScratchDatadir: scratch.Datadir, Port: server.Port, Point: res.Point,
			}).Get(ctx, &res.Import)
		}); err != nil {
			return agentError(err, route.Host, queue)
		}
		res.Notes = append(res.Notes, res.Import.Notes...)
		return nil
	}()

	// Teardown on a disconnected context: a failed or cancelled restore
	// still removes its scratch server.
	failedPhase := phase
	if prepared {
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		terr := timed(dctx, drill.PhaseTeardown, func() error {
			return workflow.ExecuteActivity(agentCtx(dctx, &route, queue, 10*time.Minute), agent.TeardownDrill, ref).Get(dctx, nil)
		})
		res.TornDown = terr == nil
		if terr != nil {
			log.Error("table restore teardown failed: the scratch server or its files may be left on the host", "host", route.Host, "error", terr)
			if runErr == nil {
				runErr, failedPhase = terr, drill.PhaseTeardown
			}
		}
		res.Finished = workflow.Now(dctx)
	} else {
		res.Finished = workflow.Now(ctx)
	}
	res.Seconds = res.Finished.Sub(started).Seconds()
	if runErr == nil {
		log.Info("table restored", "instance", req.Instance, "table", src.String(), "into", req.Into, "as", dst.String(),
			"method", res.Import.Method, "rows", res.Import.DestSum.Rows)
		return res, nil
	}
	var ae *temporal.ApplicationError
	if temporal.IsCanceledError(runErr) || !errors.As(runErr, &ae) {
		return nil, runErr
	}
	msg := fmt.Sprintf("table restore %s of %s into %s as %s failed", req.RestoreID, src, req.Into, dst)
	if failedPhase != "" {
		msg += " in phase " + failedPhase
	}
	return nil, temporal.NewNonRetryableApplicationError(msg+": "+ae.Error(), ae.Type(), runErr)
}
