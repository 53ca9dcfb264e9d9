package activities

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
)

// Restore phases, recorded in the staging directory so that a retried
// activity resumes after the last completed phase.
const (
	phaseFetched  = "fetched"
	phasePrepared = "prepared"
	phaseMoving   = "moving"
	phaseDone     = "done"
)

type restoreState struct {
	BackupID string `json:"backup_id"`
	Phase    string `json:"phase"`
}

// stagingDir is where a backup is downloaded and prepared: beside the target
// so that --move-back is a rename on the same filesystem.
func stagingDir(target string) string {
	return filepath.Join(filepath.Dir(target), ".strata-restore-"+filepath.Base(target))
}

func readState(staging string) restoreState {
	var s restoreState
	b, err := os.ReadFile(filepath.Join(staging, ".strata-state"))
	if err == nil {
		_ = json.Unmarshal(b, &s)
	}
	return s
}

func writeState(staging string, s restoreState) error {
	b, _ := json.Marshal(s)
	tmp := filepath.Join(staging, ".strata-state.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(staging, ".strata-state"))
}

// RestoreBackup downloads a backup into a staging directory beside the target
// (verifying every chunk's sha256 before it is decompressed), extracts it,
// prepares it and moves it into the target datadir, which must not exist or
// be empty. Nothing touches the target until the backup has been fully
// verified and prepared.
func (a *Agent) RestoreBackup(ctx context.Context, p RestoreParams) (*RestoreStats, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("backup_id", p.BackupID), zap.String("target_dir", p.TargetDir))
	if !filepath.IsAbs(p.TargetDir) {
		return nil, fail(ErrInvalidRequest, "target_dir %q must be an absolute path on host %s", p.TargetDir, a.Host)
	}
	target := filepath.Clean(p.TargetDir)
	m, err := a.Repo.ReadManifest(ctx, p.Instance, p.BackupID)
	if err != nil {
		return nil, classify(err)
	}
	if m.Type != manifest.TypeFull {
		return nil, fail(ErrInvalidRequest, "backup %s is %s; this agent restores full backups only", m.BackupID, m.Type)
	}
	var paths physical.Paths
	if in, err := a.Config.Instance(p.Instance); err == nil {
		paths = toolPaths(in)
	}
	flavor := mysqlx.FlavorMariaDB
	if m.Tool == "xtrabackup" {
		flavor = mysqlx.FlavorMySQL
	}
	tool, err := physical.ForFlavor(flavor, paths)
	if err != nil {
		return nil, classify(err)
	}
	staging := stagingDir(target)
	st := readState(staging)
	if st.BackupID != p.BackupID {
		st = restoreState{}
	}
	if st.Phase == phaseDone {
		return &RestoreStats{TargetDir: target, RawBytes: m.RawSize}, nil
	}
	if st.Phase == phaseMoving {
		// A move-back was interrupted: the target holds only what we moved
		// into it (it was empty when we started). Start over from the download.
		log.Warn("previous move-back was interrupted; clearing target and restaging")
		if err := clearDir(target); err != nil {
			return nil, errorf("clear partially restored target: %w", err)
		}
		st = restoreState{}
	}
	if err := checkTarget(target); err != nil {
		return nil, err
	}

	hb := startHeartbeat(ctx, a.heartbeatEvery(), RestoreProgress{Phase: "starting"})
	defer hb.close()
	stats := &RestoreStats{TargetDir: target, RawBytes: m.RawSize}

	// Fetch: an interrupted prepare may leave a half-applied backup, so
	// anything short of "fetched" or "prepared" is fetched again.
	if st.Phase != phasePrepared {
		if err := checkSpace(filepath.Dir(target), m.RawSize); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := os.RemoveAll(staging); err != nil {
			return nil, errorf("clear staging dir: %w", err)
		}
		if err := os.MkdirAll(staging, 0o750); err != nil {
			return nil, classify(errorf("create staging dir %s: %w", staging, err))
		}
		n, err := a.fetch(ctx, m, tool, staging, hb)
		if err != nil {
			_ = os.RemoveAll(staging)
			var ce *pipeline.ChunkError
			if errors.As(err, &ce) {
				return nil, fail(ErrCorruptBackup, "backup %s of %s is corrupt: %v; the target was not touched", m.BackupID, m.Instance, ce)
			}
			return nil, classify(err)
		}
		stats.DownloadedBytes = n
		stats.FetchSeconds = time.Since(t0).Seconds()
		log.Info("backup fetched", zap.Int64("stored_bytes", n), zap.Float64("seconds", stats.FetchSeconds))

		hb.update(ctx, RestoreProgress{Phase: "preparing"})
		t0 = time.Now()
		if err := tool.Prepare(ctx, staging, "", int64(a.prepareMemory(p.Instance)), nil); err != nil {
			_ = os.RemoveAll(staging)
			return nil, classify(err)
		}
		stats.PrepareSeconds = time.Since(t0).Seconds()
		if err := writeState(staging, restoreState{BackupID: p.BackupID, Phase: phasePrepared}); err != nil {
			return nil, err
		}
		log.Info("backup prepared", zap.Float64("seconds", stats.PrepareSeconds))
	}

	hb.update(ctx, RestoreProgress{Phase: "moving back"})
	t0 := time.Now()
	if err := writeState(staging, restoreState{BackupID: p.BackupID, Phase: phaseMoving}); err != nil {
		return nil, err
	}
	if err := tool.MoveBack(ctx, staging, target, nil); err != nil {
		return nil, classify(err)
	}
	stats.MoveBackSeconds = time.Since(t0).Seconds()
	if err := os.RemoveAll(staging); err != nil {
		log.Warn("could not remove staging dir", zap.Error(err))
	}
	log.Info("restore complete", zap.Float64("move_back_seconds", stats.MoveBackSeconds))
	return stats, nil
}

func (a *Agent) prepareMemory(instance string) int64 {
	if in, err := a.Config.Instance(instance); err == nil {
		return int64(in.Backup.UseMemory)
	}
	return int64(a.Config.Defaults.UseMemory)
}

// fetch downloads, verifies and extracts the backup stream into dir.
func (a *Agent) fetch(ctx context.Context, m *manifest.Manifest, tool *physical.Tool, dir string, hb *heartbeater) (int64, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, wait, err := tool.Extract(cctx, dir)
	if err != nil {
		return 0, err
	}
	var stored int64
	_, derr := pipeline.Download(cctx, a.Repo.Backend(), repo.BackupPrefix(m.Instance, m.BackupID), m.Chunks, m.Compression, w,
		pipeline.DownloadOptions{
			Parallelism:     a.parallelism(m.Instance),
			ExpectRawSHA256: m.RawSHA256,
			Progress: func(pr pipeline.Progress) {
				stored = pr.StoredBytes
				hb.update(ctx, RestoreProgress{Phase: "downloading", Chunks: pr.Chunks, RawBytes: pr.RawBytes})
			},
		})
	if derr != nil {
		cancel() // kill the extractor
	}
	cerr := w.Close()
	werr := wait()
	switch {
	case derr != nil:
		return 0, derr
	case cerr != nil && !errors.Is(cerr, os.ErrClosed):
		return 0, errorf("close extractor input: %w", cerr)
	case werr != nil:
		return 0, werr
	}
	return stored, nil
}

func (a *Agent) parallelism(instance string) int {
	if in, err := a.Config.Instance(instance); err == nil {
		return in.Backup.Parallelism
	}
	return a.Config.Defaults.Parallelism
}

// checkTarget requires the target datadir to be absent or empty.
func checkTarget(target string) error {
	f, err := os.Open(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return classify(errorf("open target dir %s: %w", target, err))
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return errorf("read target dir %s: %w", target, err)
	}
	if len(names) > 0 {
		return fail(ErrTargetNotEmpty, "target dir %s is not empty (it holds %q, ...): restore into a new or empty directory; Strata never overwrites a datadir", target, names[0])
	}
	return nil
}

// checkSpace fails early when the filesystem cannot hold the restored data.
func checkSpace(dir string, need int64) error {
	for d := dir; ; d = filepath.Dir(d) {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(d, &fs); err == nil {
			free := int64(fs.Bavail) * int64(fs.Bsize)
			want := need + need/10 + 64<<20
			if free < want {
				return fail(ErrInsufficientSpace, "not enough free space under %s: %d MiB free, the restore needs about %d MiB; free space or choose another target dir", d, free>>20, want>>20)
			}
			return nil
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
