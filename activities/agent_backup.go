package activities

import (
	"context"
	"errors"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
)

// Backup takes a hot physical backup of a local instance and streams it into
// the repository: tool stdout → chunks → parallel compression → sha256 →
// storage. The manifest is written last; a backup exists only when it does.
// It is safe to retry: a retry after the manifest was written returns it, and
// any other retry discards the partial upload and streams again (a backup
// tool cannot resume a stream).
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
		return Summarize(m), nil
	} else if !errors.Is(err, repo.ErrBackupNotFound) {
		return nil, classify(err)
	}
	if err := a.Repo.DeleteBackupData(ctx, p.Instance, p.BackupID); err != nil {
		return nil, errorf("discard partial upload of %s: %w", p.BackupID, err)
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

	hb := startHeartbeat(ctx, a.heartbeatEvery(), BackupProgress{Phase: "starting"})
	defer hb.close()
	log.Info("backup starting", zap.String("tool", tool.Backup), zap.String("server", si.Version), zap.String("compression", codec))

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
				hb.update(ctx, BackupProgress{Phase: "streaming", Chunks: pr.Chunks, RawBytes: pr.RawBytes, StoredBytes: pr.StoredBytes})
			},
		})
		return err
	})
	if err != nil {
		// Leave nothing half-written: without a manifest the chunks are not a
		// backup, and removing them now saves the garbage collector the work.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if derr := a.Repo.DeleteBackupData(cctx, p.Instance, p.BackupID); derr != nil {
			log.Warn("could not remove partial upload", zap.Error(derr))
		}
		log.Error("backup failed", zap.Error(err))
		var te *physical.ToolError
		if errors.As(err, &te) {
			return nil, errorf("%w", te) // a tool failure may be transient (server restart, lock wait): retry
		}
		return nil, classify(err)
	}

	if p.Type != manifest.TypeFull && outcome.Checkpoints.FromLSN != p.FromLSN {
		_ = a.Repo.DeleteBackupData(ctx, p.Instance, p.BackupID)
		return nil, errorf("%s reported from_lsn %d for a %s backup from LSN %d", tool.Name, outcome.Checkpoints.FromLSN, p.Type, p.FromLSN)
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
	}
	if err := a.Repo.WriteManifest(ctx, m); err != nil {
		return nil, errorf("write manifest of %s: %w", p.BackupID, classify(err))
	}
	log.Info("backup complete", zap.Int64("raw_bytes", m.RawSize), zap.Int64("stored_bytes", m.StoredSize),
		zap.Int("chunks", len(m.Chunks)), zap.String("gtid", m.GTIDSet), zap.Duration("commits_blocked", outcome.CommitsBlocked))
	return Summarize(m), nil
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
	if p.Type == manifest.TypeDifferential && parent.Type != manifest.TypeFull {
		return fail(ErrInvalidRequest, "differential backup %s names parent %s, which is %s, not full", p.BackupID, p.ParentID, parent.Type)
	}
	if parent.ToLSN != p.FromLSN {
		return fail(ErrInvalidRequest, "backup %s would start at LSN %d but its parent %s ends at LSN %d", p.BackupID, p.FromLSN, p.ParentID, parent.ToLSN)
	}
	return nil
}
