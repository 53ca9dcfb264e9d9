package activities

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/replay"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/tracing"
)

// ArchiveParams asks an agent to stream an instance's binlogs into the
// repository for a while.
type ArchiveParams struct {
	Instance string        `json:"instance"`
	RunFor   time.Duration `json:"run_for"`
}

// ArchiveBinlogs streams binlog events from the instance, as a replica
// would, into immutable segments in the repository, for RunFor or until
// cancelled. Each attempt resumes exactly after the last segment in the
// repository, so a crash of the agent, the network or the server loses
// nothing and duplicates nothing. Progress (position, lag) is heartbeated.
func (a *Agent) ArchiveBinlogs(ctx context.Context, p ArchiveParams) (*binlog.Status, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance))
	in, err := a.instance(p.Instance)
	if err != nil {
		return nil, err
	}
	if in.Connect.Address == "" {
		return nil, fail(ErrConfig, "instance %s: binlog archiving connects as a replica over TCP: set connect.address", in.ID)
	}
	host, portStr, err := net.SplitHostPort(in.Connect.Address)
	if err != nil {
		return nil, fail(ErrConfig, "instance %s: connect.address %q: %v", in.ID, in.Connect.Address, err)
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	db, si, ep, err := openSource(ctx, in)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if !si.LogBin {
		return nil, fail(ErrConfig, "instance %s has log_bin off: enable binary logging to archive binlogs", in.ID)
	}
	hb := startHeartbeat(ctx, a.heartbeatEvery(), binlog.Status{})
	defer hb.close()
	defer metrics.ArchiveStarted(in.ID)()
	run := archiveRun(ctx)
	st := a.binlogStore(in.ID) // encrypts segments when the instance has encryption enabled
	status, err := binlog.Run(ctx, st, db, binlog.Source{
		Host: host, Port: uint16(port), User: ep.User, Password: ep.Password, Flavor: string(si.Flavor),
		ReplicaID: in.Archive.ReplicaServerID,
	}, binlog.Options{
		FlushInterval:   in.Archive.FlushInterval.Std(),
		MaxSegmentBytes: int(in.Archive.MaxSegmentSize),
		RunFor:          p.RunFor,
		Progress: func(s binlog.Status) {
			hb.update(ctx, s)
			metrics.ObserveArchive(in.ID, run, s)
		},
		Log: func(msg string, kv ...any) { log.Sugar().Infow(msg, kv...) },
	})
	if status != nil {
		metrics.ObserveArchive(in.ID, run, *status)
	}
	if err != nil {
		if ctx.Err() != nil && status != nil {
			// Stopped on request: what was received is written; report where.
			return status, nil
		}
		log.Warn("binlog archiving stopped", zap.Error(err))
		return nil, classify(err)
	}
	return status, nil
}

// archiveRun names one archiver run for the archive metrics, whose counts
// start at zero in each activity attempt.
func archiveRun(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	info := activity.GetInfo(ctx)
	return fmt.Sprintf("%s/%s/%d", info.WorkflowExecution.RunID, info.ActivityID, info.Attempt)
}

// ReplayParams asks an agent to replay archived binlogs onto a restored
// datadir, from a backup's consistent point to a target.
type ReplayParams struct {
	Instance  string        `json:"instance"`
	StartFile string        `json:"start_file"`
	StartPos  uint32        `json:"start_pos"`
	Target    binlog.Target `json:"target"`
	// TargetDir is the restored datadir; no server may run on it.
	TargetDir string `json:"target_dir"`
	// AllowUnencrypted replays, on an instance with encryption enabled,
	// segments archived unencrypted or without authentication (old data).
	AllowUnencrypted bool `json:"allow_unencrypted,omitempty"`
}

// ReplayResult reports a replay.
type ReplayResult struct {
	Method       string    `json:"method"`
	Transactions int       `json:"transactions"`
	Bytes        int64     `json:"bytes"`
	LastGTID     string    `json:"last_gtid,omitempty"`
	LastTime     time.Time `json:"last_time"`
	CutFile      string    `json:"cut_file"`
	CutPos       uint32    `json:"cut_pos"`
	// Seconds is the time spent applying; TotalSeconds adds rebuilding the
	// files and starting and stopping the replay server.
	Seconds      float64 `json:"seconds"`
	TotalSeconds float64 `json:"total_seconds"`
	// BufferPool is the replay server's innodb_buffer_pool_size, in bytes.
	BufferPool int64 `json:"buffer_pool,omitempty"`
}

// ReplayBinlogs rebuilds the binlog files from the archive, cut at the
// target, and applies them to the restored datadir with a server of its
// own (see internal/replay), which it stops again.
func (a *Agent) ReplayBinlogs(ctx context.Context, p ReplayParams) (*ReplayResult, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("target", p.Target.String()))
	in, err := a.Config.Instance(p.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	st := a.binlogStore(p.Instance) // with the agent's keys, to read encrypted segments
	st.AllowUnencrypted = p.AllowUnencrypted
	ix, err := st.ReadIndex(ctx)
	if err != nil {
		return nil, outsideWindow(p.Instance, err)
	}
	segs, err := ix.Covering(p.StartFile, p.StartPos)
	if err != nil {
		return nil, outsideWindow(p.Instance, err)
	}
	fl, err := binlog.RunFlavor(segs)
	if err != nil {
		return nil, fail(ErrCorruptBackup, "instance %s: %v", p.Instance, err)
	}
	if err := p.Target.CheckFlavor(fl); err != nil {
		return nil, fail(ErrInvalidRequest, "instance %s: %v", p.Instance, err)
	}
	dir := filepath.Join(filepath.Dir(filepath.Clean(p.TargetDir)), ".strata-binlogs-"+filepath.Base(p.TargetDir))
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, classify(err)
	}
	defer os.RemoveAll(dir)
	hb := startHeartbeat(ctx, a.heartbeatEvery(), "rebuilding binlogs")
	defer hb.close()
	t0 := time.Now()
	_, span := tracing.Start(tracing.WithAttributes(ctx, attribute.String(tracing.AttrInstance, p.Instance)), tracing.SpanReplay,
		attribute.String("target", p.Target.String()))
	res, err := a.replay(ctx, p, in, fl, st, segs, dir, hb, t0)
	if res != nil {
		span.SetAttributes(attribute.Int64(tracing.AttrBytes, res.Bytes), attribute.Int("transactions", res.Transactions))
	}
	tracing.End(span, err)
	if err != nil {
		return nil, err
	}
	log.Info("binlogs replayed", zap.String("method", res.Method), zap.Int("transactions", res.Transactions),
		zap.String("last_gtid", res.LastGTID), zap.Float64("seconds", res.Seconds))
	return res, nil
}

// replay rebuilds the binlogs and applies them (ReplayBinlogs, traced).
func (a *Agent) replay(ctx context.Context, p ReplayParams, in *config.Instance, fl flavor.Name, st *binlog.Store, segs []binlog.Segment, dir string, hb *heartbeater, t0 time.Time) (*ReplayResult, error) {
	built, err := binlog.Build(ctx, st, segs, p.StartFile, p.StartPos, p.Target, dir)
	if err != nil {
		return nil, outsideWindow(p.Instance, err)
	}
	hb.update(ctx, "applying binlogs")
	rp := replayParams(in, fl)
	rp.Datadir, rp.Files, rp.StartPos, rp.LastGTID = filepath.Clean(p.TargetDir), built.Files, built.StartPos, built.LastGTID
	rp.Scratch = a.Config.Agent.ScratchDir
	rp.Tick = func() { hb.update(ctx, "applying binlogs") }
	rp.WorkflowID, rp.RunID = activity.GetInfo(ctx).WorkflowExecution.ID, activity.GetInfo(ctx).WorkflowExecution.RunID
	rr, err := replay.Run(ctx, rp)
	if errors.Is(err, replay.ErrServerRunning) {
		return nil, fail(ErrTargetInUse, "%v", err)
	}
	if errors.Is(err, replay.ErrInterrupted) {
		return nil, fail(ErrReplayInterrupted, "%v: part of the binlogs may be applied already; the backup must be restored again", err)
	}
	if err != nil {
		return nil, classify(err)
	}
	res := &ReplayResult{Method: rr.Method, Transactions: built.Txns, Bytes: built.Bytes,
		LastGTID: built.LastGTID, LastTime: built.LastTime, CutFile: built.CutFile, CutPos: built.CutPos,
		Seconds: rr.Seconds, TotalSeconds: time.Since(t0).Seconds(), BufferPool: rr.Pool.Bytes}
	if rr.Pool.Bytes > 0 {
		a.logger(ctx).Info("replay server", zap.String("buffer_pool", rr.Pool.Rule), zap.Float64("server_cpu_seconds", rr.Server.CPUSeconds),
			zap.Int64("server_read_bytes", rr.Server.ReadBytes), zap.Int64("server_write_bytes", rr.Server.WriteBytes))
	}
	return res, nil
}

// replayParams are the instance's replay settings and the tools of the
// flavor the archive recorded: MariaDB's (tools.mariadbd, mariadb-binlog,
// mariadb) or MySQL's (tools.mysqld, tools.mysqlbinlog, tools.mysql), never
// those of the other flavor.
func replayParams(in *config.Instance, fl flavor.Name) replay.Params {
	p := replay.Params{Method: in.Archive.ReplayMethod, Flavor: fl, Threads: in.Archive.ReplayThreads,
		BufferPool: int64(in.Archive.ReplayMemory)}
	if fl == flavor.MySQL {
		p.Mariadbd, p.BinlogTool, p.Client = in.Tools.Mysqld, in.Tools.Mysqlbinlog, in.Tools.Mysql
	} else {
		p.Mariadbd = in.Tools.Mariadbd
	}
	return p
}

// outsideWindow makes a missing stretch of archive, or a segment no key of
// this agent opens, a non-retryable error and leaves other failures
// (storage reads) retryable.
func outsideWindow(instance string, err error) error {
	switch {
	case errors.Is(err, binlog.ErrNotInArchive):
		return fail(ErrOutsideWindow, "instance %s: %v", instance, err)
	case crypt.IsKeyError(err), errors.Is(err, crypt.ErrDecrypt), errors.Is(err, repo.ErrNoUsableKey):
		return fail(ErrDecryptFailed, "instance %s: archived binlogs cannot be decrypted: %v", instance, err)
	case errors.Is(err, binlog.ErrCorrupt):
		return fail(ErrCorruptBackup, "instance %s: %v", instance, err)
	case errors.Is(err, binlog.ErrUnencrypted):
		return fail(ErrUnencrypted, "instance %s: %v", instance, err)
	case errors.Is(err, binlog.ErrUnauthenticated):
		return fail(ErrUnauthenticated, "instance %s: %v", instance, err)
	}
	return classify(err)
}
