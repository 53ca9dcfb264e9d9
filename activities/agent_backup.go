package activities

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/tracing"
)

// Backup takes a hot physical backup of a local instance and streams it into
// the repository: tool stdout → chunks → parallel compression → encryption
// (when enabled) → sha256 → storage. The manifest is written last; a backup
// exists only when it does.
//
// It is safe to retry. A retry after the manifest was written returns it:
// an existing manifest is accepted only when this workflow run wrote it
// (the manifest records the run); any other backup with the id is refused
// as BackupIDTaken. While it uploads, the backup holds a lease in its
// directory (repo.AcquireLease), renewed with the heartbeat, so that the
// cleanup of partial uploads leaves it alone; before the manifest is
// written, every object it names is checked to exist, and a missing one
// fails the attempt retryably (the retry uploads it again). Any other
// retry streams again (a backup tool cannot resume a stream), but
// chunks are cut by content and named by a keyed hash of it, with the
// backup's own data key or salt read back from the repository, so the
// chunks an interrupted attempt stored are recognized and not uploaded
// again (BackupSummary.ReusedBytes). After the manifest is written, chunks
// of earlier attempts that it does not reference are deleted. A failure
// that will not be retried (a typed error, or a cancellation of the
// workflow) deletes the partial upload; any other failure leaves it for the
// retry.
func (a *Agent) Backup(ctx context.Context, p BackupParams) (_ *BackupSummary, err error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("backup_id", p.BackupID))
	ctx = tracing.IDs(ctx, p.Instance, p.BackupID) // on the data path's spans
	in, err := a.instance(p.Instance)
	if err != nil {
		return nil, err // not this agent's instance: no series for a name from the request
	}
	defer func() {
		if err != nil && validType(p.Type) && lastAttempt(ctx, err) && !cancelled(ctx) {
			metrics.ObserveBackupFailure(in.ID, p.Type) // a backup that ends in failure
		}
	}()
	if p.BackupID == "" {
		return nil, fail(ErrInvalidRequest, "backup_id is required")
	}
	if err := a.checkBase(ctx, p); err != nil {
		return nil, err
	}
	holder := a.leaseHolder(ctx)
	if m, err := a.Repo.ReadManifest(ctx, p.Instance, p.BackupID); err == nil {
		if err := ownManifest(m, holder.Run); err != nil {
			return nil, err
		}
		log.Info("backup already complete, returning its manifest")
		a.afterManifest(ctx, m, nil, log) // in case the attempt that wrote it died before
		return Summarize(m), nil
	} else if !errors.Is(err, repo.ErrBackupNotFound) {
		return nil, classify(err)
	}

	db, si, ep, err := openSource(ctx, in)
	if err != nil {
		return nil, err
	}
	_ = db.Close()
	if si.Flavor == flavor.MySQL && si.Major < 8 {
		return nil, fail(ErrInvalidRequest, "instance %s runs MySQL %s: Strata backs up MySQL 8.0 and later (xtrabackup 8) and MariaDB", in.ID, si.Version)
	}
	if !sameDir(si.Datadir, in.Datadir) {
		return nil, fail(ErrConfig, "instance %s: datadir is %s in the config but the server reports %s; fix instances[].datadir", in.ID, in.Datadir, si.Datadir)
	}
	method := &physical.Method{Name: manifest.ToolLogical}
	if p.Type != manifest.TypeLogical {
		if method, err = physical.ChooseMethod(si.Flavor, in.Backup.Method, toolPaths(in)); err != nil {
			return nil, classify(fmt.Errorf("instance %s: %w", in.ID, err))
		}
	}
	if method.Tool == nil && p.Type != manifest.TypeFull && p.Type != manifest.TypeLogical {
		return nil, fail(ErrInvalidRequest, "instance %s uses backup.method clone: %v; take a full backup (the binlog archive covers the time between fulls)", in.ID, physical.ErrCloneIncremental)
	}
	codec := in.Backup.Compression
	if _, err := pipeline.NewCodec(codec, in.Backup.CompressionLevel); err != nil {
		return nil, fail(ErrConfig, "instance %s: %v", in.ID, err)
	}

	if in.EncryptionEnabled() && a.Keys == nil {
		return nil, fail(ErrConfig, "instance %s has encryption enabled but agent %s has no key encryption key loaded: give the agent the config's encryption block (key_file or key_env) and restart it", in.ID, a.Host)
	}
	lease, err := a.Repo.AcquireLease(ctx, p.Instance, p.BackupID, holder, a.leaseTTL(), time.Now())
	if errors.Is(err, repo.ErrLeaseHeld) {
		return nil, fail(ErrBackupIDTaken, "%v: choose another backup id, or wait for that backup to finish", err)
	} else if err != nil {
		return nil, classify(err)
	}
	keys, err := a.Repo.OpenUploadKeys(ctx, in.ID, p.BackupID, in.EncryptionEnabled(), a.Keys)
	if err != nil {
		return nil, classify(err)
	}
	if keys.Discarded != "" {
		log.Warn("discarded the partial upload of an earlier attempt", zap.String("because", keys.Discarded))
	}

	hb := startHeartbeatTick(ctx, a.heartbeatEvery(), BackupProgress{Phase: "starting"}, func() { a.renewLease(ctx, lease, log) })
	defer hb.close()
	log.Info("backup starting", zap.String("method", method.Name), zap.String("server", si.Version), zap.String("compression", codec),
		zap.Bool("encrypted", keys.Cipher != nil), zap.Bool("resuming", keys.Resumed), zap.String("throttle", in.Backup.Throttle.String()+"/s"))

	prefix := repo.BackupPrefix(p.Instance, p.BackupID)
	var up *pipeline.UploadResult
	sums, onCommitsBlocked := tableSumsRecorder(ctx, in, si, ep, p.Type)
	defer sums.Abort()
	started := time.Now()
	upload := func(r io.Reader) error {
		if t := in.Backup.Throttle; t > 0 {
			// The backup's own limit, read from the policy at its start.
			r = ratelimit.New(int64(t)).Reader(ctx, r)
		}
		var err error
		up, err = pipeline.Upload(ctx, a.Repo.Backend(), prefix, r, pipeline.UploadOptions{
			ChunkSize:   int64(in.Backup.ChunkSize),
			Parallelism: in.Backup.Parallelism,
			Codec:       codec,
			Level:       in.Backup.CompressionLevel,
			Progress: func(pr pipeline.Progress) {
				hb.update(ctx, BackupProgress{Phase: "streaming", Chunks: pr.Chunks, RawBytes: pr.RawBytes,
					StoredBytes: pr.StoredBytes, ReusedBytes: pr.ReusedBytes})
			},
			Cipher:  keys.Cipher,
			NameKey: keys.NameKey,
			Resume:  keys.Resumed,
			Limiter: a.Limiter,
		})
		return err
	}
	var outcome *physical.BackupOutcome
	var index *logical.Index
	if p.Type == manifest.TypeLogical {
		outcome, index, err = a.logicalBackup(ctx, in, ep, hb, log, upload)
	} else if method.Tool != nil {
		outcome, err = method.Tool.StreamBackup(ctx, physical.BackupParams{
			Endpoint:         ep,
			Datadir:          in.Datadir,
			ScratchDir:       a.Config.Agent.ScratchDir,
			IncrementalLSN:   p.FromLSN,
			LogCopyInterval:  in.Backup.LogCopyInterval.Std(),
			Log:              func(l string) { log.Debug(l, zap.String("tool", method.Name)) },
			OnCommitsBlocked: onCommitsBlocked,
		}, upload)
	} else {
		outcome, err = a.cloneBackup(ctx, in, ep, p.BackupID, hb, log, upload)
	}
	if err != nil {
		var te *physical.ToolError
		if errors.As(err, &te) {
			err = fmt.Errorf("%w", te) // a tool failure may be transient (server restart, lock wait): retry
		} else {
			err = classify(err)
		}
		if final, why := finalFailure(ctx, err); final {
			// Leave nothing half-written: without a manifest the chunks are
			// not a backup, and nothing will resume them.
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = lease.Release(cctx) // and stop renewing it; DeleteBackupData removes it anyway
			if derr := a.Repo.DeleteBackupData(cctx, p.Instance, p.BackupID); derr != nil {
				log.Warn("could not remove partial upload", zap.Error(derr))
			}
			log.Error("backup failed; partial upload removed", zap.String("because", why), zap.Error(err))
		} else {
			log.Error("backup failed; chunks stored so far are kept for the retry", zap.String("because", why), zap.Error(err))
		}
		return nil, asCancel(ctx, err)
	}

	if err := checkFromLSN(method.Name, p, outcome.Checkpoints.FromLSN); err != nil {
		// Streaming again would give the same LSN: the upload is of no use.
		_ = lease.Release(ctx)
		if derr := a.Repo.DeleteBackupData(ctx, p.Instance, p.BackupID); derr != nil {
			log.Warn("could not remove the upload", zap.Error(derr))
		}
		return nil, err
	}
	hb.update(ctx, BackupProgress{Phase: "writing manifest", Chunks: len(up.Chunks), RawBytes: up.RawSize, StoredBytes: up.StoredSize})
	m := &manifest.Manifest{
		FormatVersion:    manifest.FormatVersion,
		BackupID:         p.BackupID,
		Instance:         p.Instance,
		Type:             p.Type,
		ParentID:         p.ParentID,
		Tool:             method.Name,
		ToolVersion:      outcome.Info.ToolVersion,
		ServerFlavor:     si.Flavor.String(),
		ServerVersion:    si.Version,
		StartTime:        outcome.StartTime.UTC(),
		EndTime:          outcome.EndTime.UTC(),
		ConsistentAt:     outcome.ConsistentAt.UTC(),
		FromLSN:          outcome.Checkpoints.FromLSN,
		ToLSN:            outcome.Checkpoints.ToLSN,
		LastLSN:          outcome.Checkpoints.LastLSN,
		BinlogFile:       outcome.Info.BinlogFile,
		BinlogPos:        outcome.Info.BinlogPos,
		GTIDSet:          outcome.Info.GTID,
		LockDuration:     manifest.Duration(outcome.CommitsBlocked),
		DDLLockDuration:  manifest.Duration(outcome.DDLBlocked),
		Duration:         manifest.Duration(time.Since(started)),
		RawSize:          up.RawSize,
		StoredSize:       up.StoredSize,
		RawSHA256:        up.RawSHA256,
		Compression:      codec,
		CompressionLevel: up.Level, // effective: level 0 (the default) changed meaning with the default
		ChunkSize:        int64(in.Backup.ChunkSize),
		Chunks:           up.Chunks,
		Logical:          index,
		Encrypted:        keys.Cipher != nil,
		EncryptionKeyID:  keys.KEKID,
		UploadedBytes:    up.UploadedBytes,
		ReusedBytes:      up.ReusedBytes,
		WorkflowID:       holder.WorkflowID,
		RunID:            holder.RunID,
	}
	if sums != nil {
		hb.update(ctx, BackupProgress{Phase: "table sums", Chunks: len(up.Chunks), RawBytes: up.RawSize, StoredBytes: up.StoredSize})
		m.TableSums = backupTableSums(ctx, sums, m, log)
		// The backup waited for its sums: they are part of its duration.
		m.Duration = manifest.Duration(time.Since(started))
	}
	// The oldest format that holds its fields, so that an older Strata
	// reads every manifest it can.
	m.FormatVersion = m.MinFormatVersion()
	if err := a.checkUploaded(ctx, lease, m); err != nil {
		return nil, err
	}
	if keys.DataKey != nil {
		if err := repo.SealManifest(m, keys.DataKey); err != nil {
			return nil, err
		}
	}
	if err := a.Repo.WriteManifest(ctx, m); err != nil {
		return nil, fmt.Errorf("write manifest of %s: %w", p.BackupID, classify(err))
	}
	a.afterManifest(ctx, m, lease, log)
	metrics.ObserveBackup(metrics.Backup{Instance: m.Instance, Type: m.Type, Duration: m.Duration.Std(),
		RawBytes: m.RawSize, StoredBytes: m.StoredSize, CommitsBlocked: outcome.CommitsBlocked, DDLBlocked: outcome.DDLBlocked})
	log.Info("backup complete", zap.Int64("raw_bytes", m.RawSize), zap.Int64("stored_bytes", m.StoredSize),
		zap.Int64("uploaded_bytes", m.UploadedBytes), zap.Int64("reused_bytes", m.ReusedBytes),
		zap.Int("chunks", len(m.Chunks)), zap.String("gtid", m.GTIDSet), zap.Duration("commits_blocked", outcome.CommitsBlocked))
	return Summarize(m), nil
}

// cloneBackup takes a clone backup of a MySQL instance (CLONE LOCAL into a
// scratch directory beside the datadir, streamed to upload) and describes
// it as the streaming tools' outcome is described.
func (a *Agent) cloneBackup(ctx context.Context, in *config.Instance, ep mysqlx.Endpoint, id string, hb *heartbeater, log *zap.Logger, upload func(io.Reader) error) (*physical.BackupOutcome, error) {
	out, err := physical.CloneBackup(ctx, physical.CloneParams{
		Endpoint:      ep,
		Datadir:       in.Datadir,
		BackupID:      id,
		Parent:        in.Backup.CloneDir,
		InstallPlugin: in.Backup.CloneInstall(),
		Mysqld:        in.Tools.Mysqld,
		Tick: func(pr physical.CloneProgress) {
			if pr.Phase != "streaming" { // the upload reports its own progress
				hb.update(ctx, BackupProgress{Phase: "clone: " + pr.Phase, RawBytes: pr.Bytes})
			}
		},
		Log: func(l string) { log.Info(l, zap.String("tool", physical.ToolClone)) },
	}, upload)
	if err != nil {
		return nil, err
	}
	return &physical.BackupOutcome{
		Info: physical.Info{ToolName: physical.ToolClone, ToolVersion: out.ServerVersion, ServerVersion: out.ServerVersion,
			BinlogFile: out.Position.Name, BinlogPos: uint64(out.Position.Pos), GTID: out.GTIDSet.String()},
		ConsistentAt: out.ConsistentAt,
		StartTime:    out.StartTime,
		EndTime:      out.EndTime,
	}, nil
}

// tableSumsRecorder prepares the table sums of a backup (MariaDB, when
// backup.table_sums is on): nil and no hook otherwise. A nil recorder's
// Abort does nothing.
func tableSumsRecorder(ctx context.Context, in *config.Instance, si *mysqlx.ServerInfo, ep mysqlx.Endpoint, typ string) (*drill.Recorder, func()) {
	if !in.Backup.SumsOn() || si.Flavor != flavor.MariaDB || typ == manifest.TypeLogical {
		return nil, nil
	}
	r := drill.NewRecorder(ctx, func(ctx context.Context) (*sql.DB, error) { return mysqlx.Open(ctx, ep) }, int64(in.Backup.TableSumsMaxSize))
	return r, r.Begin
}

// backupTableSums waits for the table sums and marks whether they are at
// the backup's consistent point. A failure never fails the backup: it is
// logged and the manifest records no sums.
func backupTableSums(ctx context.Context, r *drill.Recorder, m *manifest.Manifest, log *zap.Logger) *manifest.TableSums {
	ts, err := r.Wait(ctx)
	if err != nil {
		log.Warn("table sums not recorded", zap.Error(err))
		return nil
	}
	if n := len(ts.Tables) + len(ts.Skipped); n > manifest.MaxTables {
		log.Warn("table sums not recorded: too many tables for the manifest", zap.Int("tables", n), zap.Int("max", manifest.MaxTables))
		return nil
	}
	drill.MatchBackupPoint(ts, m.BinlogFile, m.BinlogPos)
	fields := []zap.Field{zap.Int("tables", len(ts.Tables)), zap.Int("skipped", len(ts.Skipped)), zap.Float64("seconds", ts.Seconds),
		zap.Bool("at_backup_point", ts.AtBackupPoint)}
	if !ts.AtBackupPoint {
		fields = append(fields, zap.String("binlog_file", ts.BinlogFile), zap.Uint64("binlog_pos", ts.BinlogPos), zap.String("gtid", ts.GTIDSet))
	}
	log.Info("table sums recorded", fields...)
	return ts
}

// afterManifest deletes the chunks of interrupted attempts that the
// manifest does not reference (the stream differs from one run of the tool
// to the next) and releases the backup's lease (l, or the lease objects an
// attempt that died left). A failure is only logged: the backup is complete.
func (a *Agent) afterManifest(ctx context.Context, m *manifest.Manifest, l *repo.Lease, log *zap.Logger) {
	release := func() error { return a.Repo.DeleteLeases(ctx, m.Instance, m.BackupID) }
	if l != nil {
		release = func() error { return l.Release(ctx) }
	}
	if err := release(); err != nil {
		log.Warn("could not release the backup's lease", zap.Error(err))
	}
	if n, size, err := a.Repo.DeleteUnreferencedChunks(ctx, m); err != nil {
		log.Warn("could not remove chunks of an earlier attempt that the manifest does not reference", zap.Error(err))
	} else if n > 0 {
		log.Info("removed chunks of an earlier attempt", zap.Int("chunks", n), zap.Int64("bytes", size))
	}
}

// ownManifest accepts an existing manifest as the result of this backup
// only when this workflow run wrote it (an earlier attempt that died after
// writing it). Any other is an older backup with the same id: reporting it
// as this backup's success would pass old data off as new.
func ownManifest(m *manifest.Manifest, run repo.Run) error {
	if run.Same(repo.Run{WorkflowID: m.WorkflowID, RunID: m.RunID}) {
		return nil
	}
	by := "an older version of Strata"
	if m.WorkflowID != "" {
		by = fmt.Sprintf("workflow %q run %q", m.WorkflowID, m.RunID)
	}
	return fail(ErrBackupIDTaken, "backup id %q of instance %s is already taken: a backup with that id completed at %s, written by %s; choose another backup id (--id)",
		m.BackupID, m.Instance, m.EndTime.UTC().Format(time.RFC3339), by)
}

// leaseHolder describes this activity attempt for the backup's lease.
func (a *Agent) leaseHolder(ctx context.Context) repo.LeaseRecord {
	h := repo.LeaseRecord{Host: a.Host}
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		h.Run = repo.Run{WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID}
		h.Attempt = info.Attempt
	}
	return h
}

// leaseTTL is how long one renewal of a backup's lease holds: three
// heartbeat timeouts, at least two minutes. Renewals come every third of
// it, so a live agent never lets it lapse; a dead agent's lease lapses soon
// after Temporal has given up on its attempt.
func (a *Agent) leaseTTL() time.Duration {
	hb := a.Config.Temporal.HeartbeatTimeout.Std()
	if hb <= 0 {
		hb = 30 * time.Second
	}
	return min(repo.MaxLeaseTTL, max(2*time.Minute, 3*hb))
}

// renewLease renews the lease when due; it runs on the heartbeat's ticks.
// A failure is logged and tried again on the next tick: the lease holds for
// a whole ttl, and checkUploaded renews it once more before the manifest.
func (a *Agent) renewLease(ctx context.Context, l *repo.Lease, log *zap.Logger) {
	now := time.Now()
	if ctx.Err() != nil || !l.Due(now) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := l.Renew(rctx, now); err != nil {
		log.Warn("could not renew the backup's lease; trying again", zap.Error(err))
	}
}

// checkUploaded renews the lease, so that it holds while the manifest is
// written, and checks that every object m names is stored. Either failure
// is retryable: the next attempt uploads what is missing.
func (a *Agent) checkUploaded(ctx context.Context, l *repo.Lease, m *manifest.Manifest) error {
	if err := l.Renew(ctx, time.Now()); err != nil {
		return fmt.Errorf("before writing the manifest of %s: %w", m.BackupID, err)
	}
	if err := a.Repo.CheckUploaded(ctx, m); err != nil {
		return fmt.Errorf("before writing the manifest of %s: %w", m.BackupID, err)
	}
	return nil
}

// checkFromLSN checks that an incremental or differential backup starts
// where it was asked to. A mismatch is not retryable: the tool would start
// at the same LSN again.
func checkFromLSN(tool string, p BackupParams, got uint64) error {
	if p.Type == manifest.TypeFull || got == p.FromLSN {
		return nil
	}
	return fail(ErrLSNMismatch, "%s reported from_lsn %d for %s backup %s from LSN %d (the end of parent %s): the server's redo log does not continue from the parent; take a full backup",
		tool, got, p.Type, p.BackupID, p.FromLSN, p.ParentID)
}

// validType reports whether t is a backup type (the type label's values).
func validType(t string) bool {
	return manifest.IsBackupType(t)
}

// lastAttempt reports whether a failed attempt ends the backup: a failure
// that finalFailure calls final (not retryable, the workflow cancelled), or
// the retry policy's last attempt. strata_backups_total counts only those,
// so that a transient failure Temporal retries into a success is not a
// failed backup.
func lastAttempt(ctx context.Context, err error) bool {
	if final, _ := finalFailure(ctx, err); final {
		return true
	}
	return activity.IsActivity(ctx) && attemptsSpent(activity.GetInfo(ctx))
}

// cancelled reports whether the attempt ended because its workflow was
// cancelled (an operator's cancel): the backup ends, but it did not fail,
// so strata_backups_total does not count it as a failure.
func cancelled(ctx context.Context) bool {
	return ctx.Err() != nil && temporal.IsCanceledError(context.Cause(ctx))
}

// asCancel returns err so that Temporal records a cancelled attempt as
// cancelled: once the workflow cancelled the activity, the error the data
// path stops with is whatever broke first (a write to the killed
// extractor's pipe, say), not context.Canceled, and the workflow would see
// a failure instead of its cancel.
func asCancel(ctx context.Context, err error) error {
	if err != nil && cancelled(ctx) && !errors.Is(err, context.Canceled) {
		return errors.Join(context.Canceled, err)
	}
	return err
}

// attemptsSpent reports whether an attempt is its retry policy's last.
func attemptsSpent(info activity.Info) bool {
	return info.RetryPolicy != nil && info.RetryPolicy.MaximumAttempts > 0 && info.Attempt >= info.RetryPolicy.MaximumAttempts
}

// finalFailure decides whether a failed backup attempt is the last one, so
// that its partial upload is deleted, or will be retried (by Temporal, or
// when the agent restarts), so that its chunks are kept for the retry to
// reuse. why says which for the log.
func finalFailure(ctx context.Context, err error) (final bool, why string) {
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		switch {
		case temporal.IsCanceledError(cause):
			return true, "the workflow was cancelled"
		case errors.Is(cause, worker.ErrWorkerShutdown):
			return false, "the agent is shutting down"
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return false, "the attempt timed out"
		}
		return false, "the attempt was stopped: " + fmt.Sprint(cause)
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.NonRetryable() {
		return true, "the error is not retryable"
	}
	return false, "the error may be transient"
}

// checkBase validates the base of an incremental or differential backup
// against the repository, so that a hand-written request (temporal CLI)
// cannot produce a backup that does not fit its chain.
func (a *Agent) checkBase(ctx context.Context, p BackupParams) error {
	switch p.Type {
	case manifest.TypeFull, manifest.TypeLogical:
		if p.ParentID != "" || p.FromLSN != 0 {
			return fail(ErrInvalidRequest, "a %s backup has no parent_id or from_lsn", p.Type)
		}
		return nil
	case manifest.TypeIncremental, manifest.TypeDifferential:
	default:
		return fail(ErrInvalidRequest, "backup type %q is not one of %s", p.Type, manifest.BackupTypes)
	}
	if p.ParentID == "" || p.FromLSN == 0 {
		return fail(ErrInvalidRequest, "a %s backup needs parent_id and from_lsn (start it through BackupWorkflow, which plans them)", p.Type)
	}
	parent, err := a.Repo.ReadManifest(ctx, p.Instance, p.ParentID)
	if err != nil {
		return classify(err)
	}
	if in, err := a.Config.Instance(p.Instance); err == nil && in.EncryptionEnabled() && !parent.Encrypted {
		return fail(ErrUnencrypted, "base %s of %s backup %s is not encrypted, but instance %s has encryption enabled: a restore would refuse the chain; take a full backup", p.ParentID, p.Type, p.BackupID, p.Instance)
	}
	if parent.Encrypted && a.Keys != nil {
		// The base's LSN must be the one its backup recorded (a manifest
		// without MAC, from an older Strata, is left to the restore's check).
		if _, err := a.Repo.AuthenticateManifest(ctx, parent, a.Keys); errors.Is(err, repo.ErrManifestNotAuthentic) {
			return fail(ErrUnauthenticated, "base of %s backup %s: %v", p.Type, p.BackupID, err)
		}
	}
	if parent.Type == manifest.TypeLogical {
		return fail(ErrInvalidRequest, "%s backup %s names parent %s, which is a logical backup: an incremental or differential builds on a physical backup", p.Type, p.BackupID, p.ParentID)
	}
	if p.Type == manifest.TypeDifferential && parent.Type != manifest.TypeFull {
		return fail(ErrInvalidRequest, "differential backup %s names parent %s, which is %s, not full", p.BackupID, p.ParentID, parent.Type)
	}
	if parent.ToLSN != p.FromLSN {
		return fail(ErrInvalidRequest, "backup %s would start at LSN %d but its parent %s ends at LSN %d", p.BackupID, p.FromLSN, p.ParentID, parent.ToLSN)
	}
	return nil
}
