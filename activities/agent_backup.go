package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
)

// Backup takes a hot physical backup of a local instance and streams it into
// the repository: tool stdout → chunks → parallel compression → encryption
// (when enabled) → sha256 → storage. The manifest is written last; a backup
// exists only when it does.
//
// It is safe to retry. A retry after the manifest was written returns it.
// Any other retry streams again (a backup tool cannot resume a stream), but
// chunks are cut by content and named by a keyed hash of it, with the
// backup's own data key or salt read back from the repository, so the
// chunks an interrupted attempt stored are recognized and not uploaded
// again (BackupSummary.ReusedBytes). After the manifest is written, chunks
// of earlier attempts that it does not reference are deleted. A failure
// that will not be retried (a typed error, or a cancellation of the
// workflow) deletes the partial upload; any other failure leaves it for the
// retry.
func (a *Agent) Backup(ctx context.Context, p BackupParams) (*BackupSummary, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("backup_id", p.BackupID))
	in, err := a.instance(p.Instance)
	if err != nil {
		return nil, err
	}
	if p.BackupID == "" {
		return nil, fail(ErrInvalidRequest, "backup_id is required")
	}
	if err := a.checkBase(ctx, p); err != nil {
		return nil, err
	}
	if m, err := a.Repo.ReadManifest(ctx, p.Instance, p.BackupID); err == nil {
		log.Info("backup already complete, returning its manifest")
		a.removeUnreferenced(ctx, m, log) // in case the attempt that wrote it died before
		return Summarize(m), nil
	} else if !errors.Is(err, repo.ErrBackupNotFound) {
		return nil, classify(err)
	}

	ep, err := endpoint(in)
	if err != nil {
		return nil, err
	}
	db, err := mysqlx.Open(ctx, ep)
	if err != nil {
		return nil, classify(err)
	}
	si, err := mysqlx.Inspect(ctx, db)
	_ = db.Close()
	if err != nil {
		return nil, err
	}
	if si.Flavor == mysqlx.FlavorMySQL && si.Major < 8 {
		return nil, fail(ErrInvalidRequest, "instance %s runs MySQL %s: Strata backs up MySQL 8.0 and later (xtrabackup 8) and MariaDB", in.ID, si.Version)
	}
	if !sameDir(si.Datadir, in.Datadir) {
		return nil, fail(ErrConfig, "instance %s: datadir is %s in the config but the server reports %s; fix instances[].datadir", in.ID, in.Datadir, si.Datadir)
	}
	tool, err := physical.ForFlavor(si.Flavor, toolPaths(in))
	if err != nil {
		return nil, classify(err)
	}
	codec := in.Backup.Compression
	if _, err := pipeline.NewCodec(codec, in.Backup.CompressionLevel); err != nil {
		return nil, fail(ErrConfig, "instance %s: %v", in.ID, err)
	}

	keys, err := a.backupKeys(ctx, in, p.BackupID, log)
	if err != nil {
		return nil, classify(err)
	}

	hb := startHeartbeat(ctx, a.heartbeatEvery(), BackupProgress{Phase: "starting"})
	defer hb.close()
	log.Info("backup starting", zap.String("tool", tool.Backup), zap.String("server", si.Version), zap.String("compression", codec),
		zap.Bool("encrypted", keys.cipher != nil), zap.Bool("resuming", keys.resumed))

	prefix := repo.BackupPrefix(p.Instance, p.BackupID)
	var up *pipeline.UploadResult
	started := time.Now()
	outcome, err := tool.StreamBackup(ctx, physical.BackupParams{
		Endpoint:       ep,
		Datadir:        in.Datadir,
		ScratchDir:     a.Config.Agent.ScratchDir,
		IncrementalLSN: p.FromLSN,
		Log:            func(l string) { log.Debug(l, zap.String("tool", tool.Name)) },
	}, func(r io.Reader) error {
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
			Cipher:  keys.cipher,
			NameKey: keys.nameKey,
			Resume:  keys.resumed,
			Limiter: a.Limiter,
		})
		return err
	})
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
			if derr := a.Repo.DeleteBackupData(cctx, p.Instance, p.BackupID); derr != nil {
				log.Warn("could not remove partial upload", zap.Error(derr))
			}
			log.Error("backup failed; partial upload removed", zap.String("because", why), zap.Error(err))
		} else {
			log.Error("backup failed; chunks stored so far are kept for the retry", zap.String("because", why), zap.Error(err))
		}
		return nil, err
	}

	if p.Type != manifest.TypeFull && outcome.Checkpoints.FromLSN != p.FromLSN {
		_ = a.Repo.DeleteBackupData(ctx, p.Instance, p.BackupID)
		return nil, fmt.Errorf("%s reported from_lsn %d for a %s backup from LSN %d", tool.Name, outcome.Checkpoints.FromLSN, p.Type, p.FromLSN)
	}
	hb.update(ctx, BackupProgress{Phase: "writing manifest", Chunks: len(up.Chunks), RawBytes: up.RawSize, StoredBytes: up.StoredSize})
	m := &manifest.Manifest{
		FormatVersion:    manifest.FormatVersion,
		BackupID:         p.BackupID,
		Instance:         p.Instance,
		Type:             p.Type,
		ParentID:         p.ParentID,
		Tool:             tool.Name,
		ToolVersion:      outcome.Info.ToolVersion,
		ServerFlavor:     si.Flavor,
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
		CompressionLevel: in.Backup.CompressionLevel,
		ChunkSize:        int64(in.Backup.ChunkSize),
		Chunks:           up.Chunks,
		Encrypted:        keys.cipher != nil,
		EncryptionKeyID:  keys.kekID,
		UploadedBytes:    up.UploadedBytes,
		ReusedBytes:      up.ReusedBytes,
	}
	if keys.dataKey != nil {
		if err := repo.SealManifest(m, keys.dataKey); err != nil {
			return nil, err
		}
	}
	if err := a.Repo.WriteManifest(ctx, m); err != nil {
		return nil, fmt.Errorf("write manifest of %s: %w", p.BackupID, classify(err))
	}
	a.removeUnreferenced(ctx, m, log)
	log.Info("backup complete", zap.Int64("raw_bytes", m.RawSize), zap.Int64("stored_bytes", m.StoredSize),
		zap.Int64("uploaded_bytes", m.UploadedBytes), zap.Int64("reused_bytes", m.ReusedBytes),
		zap.Int("chunks", len(m.Chunks)), zap.String("gtid", m.GTIDSet), zap.Duration("commits_blocked", outcome.CommitsBlocked))
	return Summarize(m), nil
}

// removeUnreferenced deletes the chunks of interrupted attempts that the
// manifest does not reference (the stream differs from one run of the tool
// to the next). A failure is only logged: the backup is complete.
func (a *Agent) removeUnreferenced(ctx context.Context, m *manifest.Manifest, log *zap.Logger) {
	if n, size, err := a.Repo.DeleteUnreferencedChunks(ctx, m); err != nil {
		log.Warn("could not remove chunks of an earlier attempt that the manifest does not reference", zap.Error(err))
	} else if n > 0 {
		log.Info("removed chunks of an earlier attempt", zap.Int("chunks", n), zap.Int64("bytes", size))
	}
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

// backupKeys holds how one backup's chunks are named and encrypted.
type backupKeys struct {
	nameKey []byte             // keys the chunk names (ContentChunkKey)
	cipher  *crypt.ChunkCipher // nil: not encrypted
	dataKey []byte             // nil: not encrypted; authenticates the manifest
	kekID   string             // the KEK that wrapped the data key
	// resumed is true when the key or salt was stored by an earlier
	// attempt: some chunks may be stored already.
	resumed bool
}

// backupKeys returns the naming key (and, for an encrypted backup, the
// cipher) of backup id: read back from the repository when an earlier
// attempt stored them, so that identical chunks get identical names, or
// created and stored before any chunk. An encrypted backup's data key is
// stored wrapped by the agent's current key encryption key under
// keys/<kek-id>.json; an unencrypted backup's chunk names are keyed by a
// random salt in salt.json. A partial upload made in the other mode, or
// whose data key this agent cannot unwrap, is discarded.
func (a *Agent) backupKeys(ctx context.Context, in *config.Instance, id string, log *zap.Logger) (*backupKeys, error) {
	encrypt := in.EncryptionEnabled()
	if encrypt && a.Keys == nil {
		return nil, fail(ErrConfig, "instance %s has encryption enabled but agent %s has no key encryption key loaded: give the agent the config's encryption block (key_file or key_env) and restart it", in.ID, a.Host)
	}
	ks := a.Repo.BackupKeys(in.ID, id)
	objs, err := ks.List(ctx)
	if err != nil {
		return nil, err
	}
	hasSalt, err := a.Repo.HasSalt(ctx, in.ID, id)
	if err != nil {
		return nil, err
	}
	discard := func(why string) error {
		log.Warn("discarding the partial upload of an earlier attempt", zap.String("because", why))
		if err := a.Repo.DeleteBackupData(ctx, in.ID, id); err != nil {
			return fmt.Errorf("discard partial upload of %s: %w", id, err)
		}
		objs, hasSalt = nil, false
		return nil
	}
	if !encrypt {
		if len(objs) > 0 {
			if err := discard("it was stored encrypted and this instance's backups are not encrypted now"); err != nil {
				return nil, err
			}
		}
		salt, found, err := a.Repo.BackupSalt(ctx, in.ID, id)
		if err != nil {
			return nil, err
		}
		return &backupKeys{nameKey: salt, resumed: found}, nil
	}

	if hasSalt {
		if err := discard("it was stored unencrypted and this instance's backups are encrypted now"); err != nil {
			return nil, err
		}
	}
	if len(objs) > 0 {
		dk, kekID, err := repo.UnwrapAny(ks.What, objs, a.Keys)
		switch {
		case err == nil:
			return newBackupKeys(dk, id, kekID, true)
		case errors.Is(err, repo.ErrNoUsableKey):
			if err := discard("its data key is wrapped by a key this agent does not have"); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
	dk, err := crypt.NewDataKey()
	if err != nil {
		return nil, err
	}
	kekID, wrapped, err := a.Keys.Wrap(dk)
	if err != nil {
		return nil, err
	}
	err = ks.Write(ctx, repo.KeyObject{KEKID: kekID, Wrapped: wrapped})
	if errors.Is(err, storage.ErrExists) {
		// Another attempt of this backup stored its key first: use it.
		dk, kekID, err = ks.Unwrap(ctx, a.Keys)
		if err != nil {
			return nil, err
		}
		return newBackupKeys(dk, id, kekID, true)
	}
	if err != nil {
		return nil, err
	}
	return newBackupKeys(dk, id, kekID, false)
}

func newBackupKeys(dataKey []byte, backupID, kekID string, resumed bool) (*backupKeys, error) {
	c, err := crypt.NewChunkCipher(dataKey, backupID)
	if err != nil {
		return nil, err
	}
	nk, err := crypt.ChunkNameKey(dataKey)
	if err != nil {
		return nil, err
	}
	return &backupKeys{nameKey: nk, cipher: c, dataKey: dataKey, kekID: kekID, resumed: resumed}, nil
}

// checkBase validates the base of an incremental or differential backup
// against the repository, so that a hand-written request (temporal CLI)
// cannot produce a backup that does not fit its chain.
func (a *Agent) checkBase(ctx context.Context, p BackupParams) error {
	switch p.Type {
	case manifest.TypeFull:
		if p.ParentID != "" || p.FromLSN != 0 {
			return fail(ErrInvalidRequest, "a full backup has no parent_id or from_lsn")
		}
		return nil
	case manifest.TypeIncremental, manifest.TypeDifferential:
	default:
		return fail(ErrInvalidRequest, "backup type %q is not one of full, incremental, differential", p.Type)
	}
	if p.ParentID == "" || p.FromLSN == 0 {
		return fail(ErrInvalidRequest, "a %s backup needs parent_id and from_lsn (start it through BackupWorkflow, which plans them)", p.Type)
	}
	parent, err := a.Repo.ReadManifest(ctx, p.Instance, p.ParentID)
	if err != nil {
		return classify(err)
	}
	if parent.Encrypted && a.Keys != nil {
		// The base's LSN must be the one its backup recorded (a manifest
		// without MAC, from an older Strata, is left to the restore's check).
		if _, err := a.Repo.AuthenticateManifest(ctx, parent, a.Keys); errors.Is(err, repo.ErrManifestNotAuthentic) {
			return fail(ErrManifestNotAuthentic, "base of %s backup %s: %v", p.Type, p.BackupID, err)
		}
	}
	if p.Type == manifest.TypeDifferential && parent.Type != manifest.TypeFull {
		return fail(ErrInvalidRequest, "differential backup %s names parent %s, which is %s, not full", p.BackupID, p.ParentID, parent.Type)
	}
	if parent.ToLSN != p.FromLSN {
		return fail(ErrInvalidRequest, "backup %s would start at LSN %d but its parent %s ends at LSN %d", p.BackupID, p.FromLSN, p.ParentID, parent.ToLSN)
	}
	return nil
}
