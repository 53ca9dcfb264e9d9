package activities

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
)

// ErrDrillFailed is the type of the error a failed drill returns (after it
// wrote its report); its details are a DrillFailure.
const ErrDrillFailed = "DrillFailed"

// ErrVerificationFailed is the type of the error of a drill's verify
// phase that found problems (the report lists them).
const ErrVerificationFailed = "VerificationFailed"

// ErrFailedDrill refuses to restore a backup whose last drill failed,
// without the explicit override (allow_failed_drill, --allow-failed-drill).
const ErrFailedDrill = "BackupFailedDrill"

// ErrBadDrillReport: an object under <instance>/drills/ named like a
// report is not one this Strata reads (corrupt, planted, or of a newer
// format). The drill history decides which backups are used, so plans that
// read it stop, naming the object, rather than guess.
const ErrBadDrillReport = "BadDrillReport"

// ErrDrillIDTaken: the drill id has a report already (a drill id used
// before for the instance); the drill does not run, nor write a report.
const ErrDrillIDTaken = "DrillIDTaken"

// DrillFailure is the detail of an ErrDrillFailed error.
type DrillFailure struct {
	DrillID   string `json:"drill_id"`
	Phase     string `json:"phase"`
	Chunk     string `json:"chunk,omitempty"`
	ReportKey string `json:"report_key"`
}

// CorruptChunk is the detail of an ErrCorruptBackup error of a restore
// whose chunk failed its checksum: the chunk's key in the repository.
type CorruptChunk struct {
	Key string `json:"key"`
}

// KeyNotHeld is the detail of an ErrDecryptFailed error of a restore whose
// agent holds none of the key encryption keys of a chain member's data key
// (its configuration's fault, not the backup's).
type KeyNotHeld struct {
	Agent string `json:"agent"`
}

// DrillPlanRequest asks the catalog what a drill restores.
type DrillPlanRequest struct {
	Instance string `json:"instance"`
	// BackupID drills this backup (even one whose last drill failed);
	// empty: the newest backup whose chain has no failed drill.
	BackupID string `json:"backup_id,omitempty"`
	// Target makes the drill a point-in-time drill to it.
	Target binlog.Target `json:"target,omitempty"`
	// BackupOnly drills the backup alone, without the replay to the
	// newest archived transaction a drill without a target does by
	// default (config drill.point_in_time).
	BackupOnly bool `json:"backup_only,omitempty"`
	// DrillID is the drill's id: one whose report exists already (a drill
	// id used before for the instance) is refused.
	DrillID string `json:"drill_id,omitempty"`
}

// DrillPlan is what a drill restores, where and what it verifies.
type DrillPlan struct {
	Backup BackupSummary `json:"backup"`
	Chain  []string      `json:"chain"`
	// Target and PITR are set for a point-in-time drill: the target (given,
	// or the position of the backup's table sums) and where replay starts.
	Target binlog.Target `json:"target,omitempty"`
	PITR   *PITRPlan     `json:"pitr,omitempty"`
	// TargetGTID is, for a target by file and position, the GTID of the
	// archive's last transaction at it (from the archive's index): what the
	// replayed data must have executed, whatever the replay reports.
	TargetGTID string `json:"target_gtid,omitempty"`
	// Host is the agent host of the scratch server (instances[].drill.host,
	// drill.host, or the instance's host).
	Host string `json:"host"`
	// CompareSums says the backup's table sums describe the drill's target
	// point (they are at the backup point and there is no replay, or the
	// replay targets their position).
	CompareSums bool `json:"compare_sums"`
	// HeartbeatTable is instances[].heartbeat.table.
	HeartbeatTable string `json:"heartbeat_table,omitempty"`
	// Notes say what the plan skipped or left out, e.g. backups whose
	// drill failed, or why the sums are not compared.
	Notes []string `json:"notes,omitempty"`
}

// failedDrills returns the instance's backups whose last drill failed.
func (c *Catalog) failedDrills(ctx context.Context, instance string) (map[string]*drill.Report, error) {
	f, err := drill.FailedBackups(ctx, c.Repo.Backend(), instance)
	if errors.Is(err, drill.ErrBadReport) {
		return nil, fail(ErrBadDrillReport, "instance %s: %v; the drill history decides which backups are used: remove or replace that object, "+
			"or restore a backup you chose with --allow-failed-drill (allow_failed_drill)", instance, err)
	}
	if err != nil {
		return nil, classify(err)
	}
	return f, nil
}

// failedInChain returns the first member of the chain of backupID (in
// backups) whose last drill failed, or nil.
func failedInChain(backups []*manifest.Manifest, backupID string, failed map[string]*drill.Report) *drill.Report {
	if len(failed) == 0 {
		return nil
	}
	chain, err := repo.Chain(backups, backupID)
	if err != nil {
		return failed[backupID]
	}
	for _, m := range chain {
		if r := failed[m.BackupID]; r != nil {
			return r
		}
	}
	return nil
}

func describeFailed(id string, r *drill.Report) string {
	return fmt.Sprintf("backup %s failed drill %s (%s)", id, r.DrillID, drill.ReportKey(r.Instance, r.DrillID))
}

// PlanDrill picks what a drill restores: the given backup, or the newest
// one whose chain has no failed drill (skipped ones are named in Notes);
// for a point-in-time drill the base backup of the PITR plan; with no
// target given, the position of the backup's table sums when they are not
// at the backup point and the archive reaches them.
func (c *Catalog) PlanDrill(ctx context.Context, req DrillPlanRequest) (*DrillPlan, error) {
	cfg := c.cfg()
	in, err := cfg.Instance(req.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	plan := &DrillPlan{Host: cfg.DrillHost(in), HeartbeatTable: in.Heartbeat.Table}
	if req.DrillID != "" {
		old, err := drill.Read(ctx, c.Repo.Backend(), req.Instance, req.DrillID)
		switch {
		case err == nil:
			return nil, fail(ErrDrillIDTaken, "drill id %s of %s is taken: %s is the report of the drill of workflow %s, run %s (%s); start the drill with another id (strata drill --id)",
				req.DrillID, req.Instance, drill.ReportKey(req.Instance, req.DrillID), old.WorkflowID, old.RunID, old.Result)
		case errors.Is(err, storage.ErrNotFound):
		case errors.Is(err, drill.ErrBadReport):
			return nil, fail(ErrDrillIDTaken, "drill id %s of %s is taken by an object that is not a report (%v); start the drill with another id (strata drill --id)", req.DrillID, req.Instance, err)
		default:
			return nil, classify(err)
		}
	}
	backups, err := c.Repo.ListBackups(ctx, req.Instance)
	if err != nil {
		return nil, classify(err)
	}
	failed, err := c.failedDrills(ctx, req.Instance)
	if err != nil {
		return nil, err
	}
	pd := &pitrData{c: c, instance: req.Instance, backups: backups, failed: failed}
	if !req.Target.IsZero() {
		if err := req.Target.Validate(); err != nil {
			return nil, fail(ErrInvalidRequest, "%v", err)
		}
		p, err := pd.plan(ctx, PITRRequest{Instance: req.Instance, Target: req.Target, BackupID: req.BackupID, AllowFailedDrill: req.BackupID != ""})
		if err != nil {
			return nil, err
		}
		plan.Target, plan.PITR = req.Target, p
		plan.Notes = append(plan.Notes, p.Notes...)
		req.BackupID = p.BackupID
	}
	var base *manifest.Manifest
	for i := len(backups) - 1; i >= 0 && base == nil; i-- {
		b := backups[i]
		switch {
		case req.BackupID != "" && b.BackupID == req.BackupID:
			base = b
		case req.BackupID == "":
			if _, err := repo.Chain(backups, b.BackupID); err != nil {
				continue
			}
			if r := failedInChain(backups, b.BackupID, failed); r != nil {
				plan.Notes = append(plan.Notes, "skipped: "+describeFailed(b.BackupID, r))
				continue
			}
			base = b
		}
	}
	if base == nil {
		if req.BackupID != "" {
			return nil, fail(ErrBackupNotFound, "instance %s has no backup %s in %s (see `strata ls %s`)", req.Instance, req.BackupID, c.Repo, req.Instance)
		}
		return nil, fail(ErrBackupNotFound, "instance %s has no backup to drill in %s (%d backups, %d with a failed drill): take one with `strata backup %s`",
			req.Instance, c.Repo, len(backups), len(failed), req.Instance)
	}
	chain, err := repo.Chain(backups, base.BackupID)
	if err != nil {
		return nil, classify(err)
	}
	for _, m := range chain {
		plan.Chain = append(plan.Chain, m.BackupID)
	}
	plan.Backup = *Summarize(base)
	sums := base.TableSums
	if req.Target.IsZero() && !req.BackupOnly && cfg.DrillPointInTime(in) && (sums == nil || sums.AtBackupPoint) {
		if err := planLatest(ctx, plan, base, pd); err != nil {
			return nil, err
		}
	}
	switch {
	case sums == nil:
		plan.Notes = append(plan.Notes, "backup "+base.BackupID+" has no table sums: row counts and checksums are not compared")
	case plan.PITR == nil && sums.AtBackupPoint:
		plan.CompareSums = true
	case plan.PITR == nil && sums.BinlogFile != "" && req.Target.IsZero():
		// The sums describe the source at their own position: replay to it.
		t := binlog.Target{File: sums.BinlogFile, Pos: uint32(sums.BinlogPos)}
		p, err := pd.plan(ctx, PITRRequest{Instance: req.Instance, Target: t, BackupID: base.BackupID, AllowFailedDrill: true})
		if err != nil {
			plan.Notes = append(plan.Notes, fmt.Sprintf("the table sums of %s are at %s:%d, which the archive does not reach: not compared", base.BackupID, sums.BinlogFile, sums.BinlogPos))
			break
		}
		plan.Target, plan.PITR, plan.CompareSums = t, p, true
	case plan.PITR != nil && sums.BinlogFile != "" && plan.Target.File == sums.BinlogFile && uint64(plan.Target.Pos) == sums.BinlogPos:
		plan.CompareSums = true
	case plan.PITR != nil && sums.GTIDSet != "" && plan.Target.GTID != "":
		if f, err := base.Flavor(); err == nil {
			if want, err := drill.WantGTID(f.Name, base.GTIDSet, plan.Target.GTID); err == nil {
				if same, _ := drill.SameGTID(f.Name, sums.GTIDSet, want); same {
					plan.CompareSums = true
				}
			}
		}
	}
	if !plan.CompareSums && sums != nil {
		plan.Notes = append(plan.Notes, "the table sums of "+base.BackupID+" do not describe the drill's target: row counts and checksums are not compared")
	}
	return plan, nil
}

// pitrData is what point-in-time planning reads, read once for a drill's
// plan: the backups and failed drills, and the archive's index (read when
// first needed: a long archive's index takes seconds of CPU to read).
type pitrData struct {
	c        *Catalog
	instance string
	backups  []*manifest.Manifest
	failed   map[string]*drill.Report
	ix       *binlog.Index
}

func (d *pitrData) index(ctx context.Context) (*binlog.Index, error) {
	if d.ix == nil {
		ix, err := (&binlog.Store{B: d.c.Repo.Backend(), Instance: d.instance}).ReadIndex(ctx)
		if err != nil {
			return nil, classify(err)
		}
		d.ix = ix
	}
	return d.ix, nil
}

// plan is PlanPITR on the data read.
func (d *pitrData) plan(ctx context.Context, req PITRRequest) (*PITRPlan, error) {
	ix, err := d.index(ctx)
	if err != nil {
		return nil, err
	}
	return planPITR(req, d.backups, ix, d.failed)
}

// planLatest makes plan a point-in-time drill to the newest archived
// transaction when the binlog archive reaches past base's consistent point
// without a gap: the recovery a restore "to now" would give. When it does
// not, the plan stays a drill of the backup alone, with a note saying why.
func planLatest(ctx context.Context, plan *DrillPlan, base *manifest.Manifest, pd *pitrData) error {
	ix, err := pd.index(ctx)
	if err != nil {
		return err
	}
	wins := binlog.Windows(pd.backups, ix)
	for i := len(wins) - 1; i >= 0; i-- {
		w := wins[i]
		t := binlog.Target{File: w.ToFile, Pos: w.ToPos}
		if w.ToFile == "" || !binlog.Before(base, t) || (w.ToFile == base.BinlogFile && uint64(w.ToPos) <= base.BinlogPos) {
			continue
		}
		p, err := pd.plan(ctx, PITRRequest{Instance: base.Instance, Target: t, BackupID: base.BackupID, AllowFailedDrill: true})
		if err != nil {
			continue // this window does not start from base
		}
		plan.Target, plan.PITR, plan.TargetGTID = t, p, w.ToGTID
		plan.Notes = append(plan.Notes, fmt.Sprintf("point-in-time drill to the newest archived transaction, %s:%d (GTID %s, %s)",
			w.ToFile, w.ToPos, w.ToGTID, w.ToTime.UTC().Format(time.RFC3339)))
		return nil
	}
	if len(ix.Segments) > 0 {
		plan.Notes = append(plan.Notes, "the binlog archive does not reach past backup "+base.BackupID+" without a gap: the backup is drilled alone")
	}
	return nil
}

// WriteDrillReport writes a drill's report to the repository at
// drill.ReportKey. It is the one place a finished drill passes through on
// the worker.
func (c *Catalog) WriteDrillReport(ctx context.Context, r drill.Report) error {
	if err := drill.Write(ctx, c.Repo.Backend(), &r); err != nil {
		if errors.Is(err, drill.ErrReportExists) {
			return fail(ErrDrillIDTaken, "%v", err)
		}
		return classify(err)
	}
	// The drill gauges and counter of this worker (a retried write counts
	// the drill once: by its id).
	metrics.ObserveDrill(&r)
	return nil
}

// PrepareDrillParams asks a drill agent for a drill's scratch directory.
type PrepareDrillParams struct {
	Instance string `json:"instance"`
	DrillID  string `json:"drill_id"`
}

// scratchRoot is agent.scratch_dir, default the system's temp dir.
func (a *Agent) scratchRoot() string {
	if d := a.cfg().Agent.ScratchDir; d != "" {
		return d
	}
	return os.TempDir()
}

// PrepareDrill creates the drill's scratch directory,
// <agent.scratch_dir>/drills/<instance>/<drill id>, tearing down what an earlier
// attempt of the same drill left there.
func (a *Agent) PrepareDrill(ctx context.Context, p PrepareDrillParams) (*drill.Scratch, error) {
	s, err := drill.ScratchFor(a.scratchRoot(), p.Instance, p.DrillID)
	if err != nil {
		return nil, fail(ErrInvalidRequest, "%v", err)
	}
	if err := s.Prepare(ctx); err != nil {
		if errors.Is(err, drill.ErrUnsafeScratch) {
			return nil, fail(ErrConfig, "%v", err)
		}
		return nil, classify(err)
	}
	a.logger(ctx, zap.String("instance", p.Instance), zap.String("drill_id", p.DrillID)).Info("drill scratch dir created", zap.String("dir", s.Dir))
	return &s, nil
}

// TeardownDrill stops the drill's scratch server and removes its
// directory; idempotent.
func (a *Agent) TeardownDrill(ctx context.Context, p PrepareDrillParams) error {
	s, err := drill.ScratchFor(a.scratchRoot(), p.Instance, p.DrillID)
	if err != nil {
		return fail(ErrInvalidRequest, "%v", err)
	}
	hb := startHeartbeat(ctx, a.heartbeatEvery(), "tearing down")
	defer hb.close()
	if err := s.Teardown(ctx); err != nil {
		if errors.Is(err, drill.ErrUnsafeScratch) {
			return fail(ErrConfig, "%v", err)
		}
		return classify(err)
	}
	a.logger(ctx, zap.String("instance", p.Instance), zap.String("drill_id", p.DrillID)).Info("drill scratch server and dir removed", zap.String("dir", s.Dir))
	return nil
}

// SweepDrills tears down the drill dirs a killed agent left; the agent
// runs it when it starts, before it takes work.
func (a *Agent) SweepDrills(ctx context.Context) error {
	removed, err := drill.Sweep(ctx, a.scratchRoot())
	for _, d := range removed {
		a.logger(ctx).Warn("removed the scratch dir (and server) of a drill an earlier agent left", zap.String("dir", d))
	}
	return err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DrillVerifyParams asks the drill agent to verify the scratch server.
type DrillVerifyParams struct {
	Instance string `json:"instance"`
	BackupID string `json:"backup_id"`
	Datadir  string `json:"datadir"`
	Port     int    `json:"port"`
	// CompareSums compares the tables with the backup manifest's table sums.
	CompareSums bool `json:"compare_sums"`
	// Replayed says binlogs were replayed (their GTIDs are in gtid_slave_pos).
	Replayed       bool   `json:"replayed"`
	HeartbeatTable string `json:"heartbeat_table,omitempty"`
}

// DrillVerifyResult is what the verification found.
type DrillVerifyResult struct {
	TablesChecked  int      `json:"tables_checked"`
	TablesCompared int      `json:"tables_compared"`
	Rows           int64    `json:"rows"`
	Problems       []string `json:"problems,omitempty"`
	// GotGTIDSet is the executed GTID position of the restored data: the
	// backup tool's record of its consistent point in the datadir, with
	// the replayed transactions (gtid_slave_pos) on top.
	GotGTIDSet string `json:"got_gtid_set"`
	// HeartbeatAt is the newest heartbeat of the restored data (zero
	// without a heartbeat table, or when it has no row; HeartbeatNote says
	// why).
	HeartbeatAt   time.Time `json:"heartbeat_at,omitempty"`
	HeartbeatNote string    `json:"heartbeat_note,omitempty"`
	// SumsNote says why checksums were not compared (a server of another
	// version than the backup's computes other CHECKSUM TABLE values).
	SumsNote string `json:"sums_note,omitempty"`
}

// VerifyDrill checks the scratch server: CHECK TABLE of every table, the
// table sums against the backup's (CompareSums), its executed GTID
// position, and the heartbeat. Findings are Problems, not errors; an error
// is a failure to verify at all.
func (a *Agent) VerifyDrill(ctx context.Context, p DrillVerifyParams) (*DrillVerifyResult, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("backup_id", p.BackupID), zap.Int("port", p.Port))
	ep := mysqlx.Endpoint{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)), User: "root"}
	if in, err := a.cfg().Instance(p.Instance); err == nil {
		ep.User = in.Connect.User
		if pw, err := in.Password(); err == nil {
			ep.Password = pw
		}
	}
	db, err := mysqlx.Open(ctx, ep)
	if err != nil {
		return nil, classify(err)
	}
	defer db.Close()
	hb := startHeartbeat(ctx, a.heartbeatEvery(), "verifying")
	defer hb.close()
	res := &DrillVerifyResult{}
	checked, problems, err := drill.CheckTables(ctx, db)
	if err != nil {
		return nil, classify(err)
	}
	res.TablesChecked, res.Problems = checked, problems
	hb.update(ctx, "summing tables")
	var want *manifest.TableSums
	m, err := a.Repo.ReadManifest(ctx, p.Instance, p.BackupID)
	if err != nil {
		return nil, classify(err)
	}
	server, err := m.Flavor()
	if err != nil {
		return nil, fail(ErrCorruptBackup, "%v", err)
	}
	recordedVersion := ""
	if p.CompareSums {
		if want = m.TableSums; want == nil {
			return nil, fail(ErrInvalidRequest, "backup %s of %s has no table sums to compare", p.BackupID, p.Instance)
		}
		recordedVersion = m.ServerVersion
	}
	var skip func(schema, table string) bool
	algorithm := drill.DefaultSumsAlgorithm
	if want != nil {
		skip, algorithm = drill.SkipTables(want.Skipped), want.Algorithm
	}
	// Summed always: the row counts go into the report.
	got, err := drill.TableSums(ctx, db, algorithm, skip)
	if err != nil {
		return nil, classify(err)
	}
	for _, g := range got {
		res.Rows += g.Rows
	}
	if want != nil {
		wantSums := want.Tables
		var version string
		if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
			return nil, classify(err)
		}
		if ok, note := drill.ChecksumsComparable(want.Algorithm, recordedVersion, version); !ok {
			wantSums, got, res.SumsNote = drill.RowsOnly(wantSums), drill.RowsOnly(got), note
			log.Warn(note)
		}
		compared, sp := drill.CompareSums(wantSums, got)
		res.TablesCompared = compared
		res.Problems = append(res.Problems, sp...)
	}
	res.GotGTIDSet, err = executedGTID(ctx, db, server.Name, p.Datadir, p.Replayed)
	if err != nil {
		res.Problems = append(res.Problems, "executed GTID set: "+err.Error())
	}
	if p.HeartbeatTable != "" {
		t, err := drill.ReadHeartbeat(ctx, db, p.HeartbeatTable)
		switch {
		case errors.Is(err, drill.ErrNoHeartbeat):
			res.HeartbeatNote = err.Error()
		case err != nil:
			return nil, classify(err)
		default:
			res.HeartbeatAt = t
		}
	}
	log.Info("drill verified", zap.Int("tables_checked", res.TablesChecked), zap.Int("tables_compared", res.TablesCompared),
		zap.Int("problems", len(res.Problems)), zap.String("gtid", res.GotGTIDSet))
	return res, nil
}

// executedGTID is the executed GTID set of the restored data, for a
// server of flavor f (the backup's). MySQL keeps it in the datadir
// (mysql.gtid_executed): @@gtid_executed, replayed transactions included.
// MariaDB: the consistent point the backup tool recorded in the datadir
// (its binlog info), with the transactions a replay applied
// (gtid_slave_pos) on top.
func executedGTID(ctx context.Context, db *sql.DB, f flavor.Name, datadir string, replayed bool) (string, error) {
	if f == flavor.MySQL {
		var executed string
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_executed").Scan(&executed); err != nil {
			return "", fmt.Errorf("read gtid_executed: %w", err)
		}
		set, err := gtid.Parse(f, executed)
		if err != nil {
			return "", err
		}
		return set.String(), nil
	}
	base := ""
	for _, name := range []string{"mariadb_backup_binlog_info", "xtrabackup_binlog_info"} {
		bi, err := physical.ReadBinlogInfo(filepath.Join(datadir, name), f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		base = bi.GTID.String()
		break
	}
	if base == "" {
		if in, err := physical.ReadInfo(datadir, f); err == nil {
			base = in.GTID
		}
	}
	var slave string
	if replayed {
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_slave_pos").Scan(&slave); err != nil {
			return "", fmt.Errorf("read gtid_slave_pos: %w", err)
		}
	}
	return drill.MergeGTID(base, strings.Split(slave, ",")...)
}
