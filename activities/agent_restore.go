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

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
)

// Restore phases, recorded in the staging directory so that a retried
// activity resumes after the last completed step.
const (
	phaseFetching  = "fetching"  // member Applied is being downloaded (base/ intact unless Applied is 0)
	phasePreparing = "preparing" // member Applied is being applied to base/: base/ may be half-changed
	phasePrepared  = "prepared"  // Applied members are fully prepared in base/
	phaseMoving    = "moving"    // move-back into the target has begun
	phaseDone      = "done"      // the target holds the restored datadir
)

type restoreState struct {
	BackupID string   `json:"backup_id"`
	Chain    []string `json:"chain"`
	Phase    string   `json:"phase"`
	Applied  int      `json:"applied"` // chain members prepared into base/
}

func (s restoreState) matches(p RestoreParams) bool {
	if s.BackupID != p.BackupID || len(s.Chain) != len(p.Chain) {
		return false
	}
	for i := range s.Chain {
		if s.Chain[i] != p.Chain[i] {
			return false
		}
	}
	return true
}

// stagingDir is where a backup is downloaded and prepared: beside the target
// so that --move-back is a rename on the same filesystem.
func stagingDir(target string) string {
	return filepath.Join(filepath.Dir(target), ".strata-restore-"+filepath.Base(target))
}

func readState(staging string) restoreState {
	var s restoreState
	b, err := os.ReadFile(filepath.Join(staging, "state.json"))
	if err == nil {
		_ = json.Unmarshal(b, &s)
	}
	return s
}

func writeState(staging string, s restoreState) error {
	b, _ := json.Marshal(s)
	tmp := filepath.Join(staging, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(staging, "state.json"))
}

// RestoreBackup restores a chain (a full, then its incrementals or its
// differential) into the target datadir, which must not exist or be empty.
// Each member is downloaded with every chunk's sha256 verified before it is
// decompressed, extracted, and prepared onto the base in a staging directory
// beside the target; only then is the result moved into the target. A retry
// resumes after the last member that was fully applied.
func (a *Agent) RestoreBackup(ctx context.Context, p RestoreParams) (*RestoreStats, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("backup_id", p.BackupID), zap.String("target_dir", p.TargetDir))
	if !filepath.IsAbs(p.TargetDir) {
		return nil, fail(ErrInvalidRequest, "target_dir %q must be an absolute path on host %s", p.TargetDir, a.Host)
	}
	if len(p.Chain) == 0 || p.Chain[len(p.Chain)-1] != p.BackupID {
		return nil, fail(ErrInvalidRequest, "chain must list the backups from the full to %s (RestoreWorkflow resolves it)", p.BackupID)
	}
	target := filepath.Clean(p.TargetDir)
	chain, err := a.loadChain(ctx, p)
	if err != nil {
		return nil, err
	}
	tool, err := a.restoreTool(p.Instance, chain[0])
	if err != nil {
		return nil, err
	}

	staging := stagingDir(target)
	base, inc := filepath.Join(staging, "base"), filepath.Join(staging, "inc")
	st := readState(staging)
	if st.Phase == phaseDone && st.matches(p) {
		// A retry after the move-back finished: the work is done.
		_ = os.RemoveAll(staging)
		return &RestoreStats{TargetDir: target}, nil
	}
	if st.Phase == phaseMoving && st.matches(p) {
		// An interrupted move-back: the target holds only what we moved
		// into it (it was empty when we began). Start over.
		log.Warn("previous move-back was interrupted; clearing target and restaging")
		if err := clearDir(target); err != nil {
			return nil, errorf("clear partially restored target: %w", err)
		}
		st = restoreState{}
	}
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	resumable := st.Phase == phasePrepared || (st.Phase == phaseFetching && st.Applied > 0)
	if !st.matches(p) || !resumable {
		// Nothing reusable, or a prepare was interrupted half-way and base/
		// may be half-applied: start from the full.
		st = restoreState{BackupID: p.BackupID, Chain: p.Chain}
		if err := checkSpace(filepath.Dir(target), chainSpace(chain)); err != nil {
			return nil, err
		}
		if err := os.RemoveAll(staging); err != nil {
			return nil, errorf("clear staging dir: %w", err)
		}
		if err := os.MkdirAll(staging, 0o750); err != nil {
			return nil, classify(errorf("create staging dir %s: %w", staging, err))
		}
	} else {
		log.Info("resuming restore", zap.Int("applied", st.Applied), zap.Int("chain", len(chain)))
	}

	hb := startHeartbeat(ctx, a.heartbeatEvery(), RestoreProgress{Phase: "starting"})
	defer hb.close()
	stats := &RestoreStats{TargetDir: target}
	for _, m := range chain {
		stats.RawBytes += m.RawSize
	}
	mem := a.prepareMemory(p.Instance)
	for i := st.Applied; i < len(chain); i++ {
		m := chain[i]
		st.Phase = phaseFetching
		if err := writeState(staging, st); err != nil {
			return nil, err
		}
		dir := base
		if i > 0 {
			dir = inc
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, classify(err)
		}
		t0 := time.Now()
		n, err := a.fetch(ctx, m, tool, dir, hb)
		if err != nil {
			return nil, fetchError(m, staging, err)
		}
		stats.DownloadedBytes += n
		stats.FetchSeconds += time.Since(t0).Seconds()

		hb.update(ctx, RestoreProgress{Phase: "preparing", BackupID: m.BackupID})
		st.Phase = phasePreparing
		if err := writeState(staging, st); err != nil {
			return nil, err
		}
		t0 = time.Now()
		incDir := ""
		if i > 0 {
			incDir = inc
		}
		if err := tool.Prepare(ctx, base, incDir, i < len(chain)-1, mem, nil); err != nil {
			return nil, classify(err)
		}
		stats.PrepareSeconds += time.Since(t0).Seconds()
		if i > 0 {
			_ = os.RemoveAll(inc)
		}
		st.Applied, st.Phase = i+1, phasePrepared
		if err := writeState(staging, st); err != nil {
			return nil, err
		}
		log.Info("chain member applied", zap.String("member", m.BackupID), zap.String("type", m.Type),
			zap.Int("step", i+1), zap.Int("of", len(chain)))
	}

	hb.update(ctx, RestoreProgress{Phase: "moving back"})
	t0 := time.Now()
	st.Phase = phaseMoving
	if err := writeState(staging, st); err != nil {
		return nil, err
	}
	if err := tool.MoveBack(ctx, base, target, nil); err != nil {
		return nil, classify(err)
	}
	stats.MoveBackSeconds = time.Since(t0).Seconds()
	st.Phase = phaseDone
	if err := writeState(staging, st); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(staging); err != nil {
		log.Warn("could not remove staging dir", zap.Error(err))
	}
	log.Info("restore complete", zap.Float64("fetch_seconds", stats.FetchSeconds), zap.Float64("prepare_seconds", stats.PrepareSeconds),
		zap.Float64("move_back_seconds", stats.MoveBackSeconds))
	return stats, nil
}

// fetchError sorts a failed download: data that does not match its
// checksums (or a missing chunk) is a corrupt backup, and a key that does not
// open it is a key problem — neither gets better by retrying, and the target
// was not touched; anything else (a storage hiccup) is retried.
func fetchError(m *manifest.Manifest, staging string, err error) error {
	switch {
	case errors.Is(err, pipeline.ErrCorrupt), errors.Is(err, storage.ErrNotFound):
		_ = os.RemoveAll(staging)
		return fail(ErrCorruptBackup, "backup %s of %s is corrupt: %v; the target was not touched (run strata verify %s)", m.BackupID, m.Instance, err, m.Instance)
	case errors.Is(err, crypt.ErrDecrypt), errors.Is(err, pipeline.ErrEncrypted), errors.Is(err, crypt.ErrNotEncrypted):
		_ = os.RemoveAll(staging)
		return fail(ErrDecryptFailed, "backup %s of %s cannot be decrypted: %v", m.BackupID, m.Instance, err)
	}
	return classify(err)
}

// loadChain reads the chain's manifests and checks that they link up.
func (a *Agent) loadChain(ctx context.Context, p RestoreParams) ([]*manifest.Manifest, error) {
	ms := make([]*manifest.Manifest, 0, len(p.Chain))
	for _, id := range p.Chain {
		m, err := a.Repo.ReadManifest(ctx, p.Instance, id)
		if err != nil {
			return nil, classify(err)
		}
		ms = append(ms, m)
	}
	chain, err := repo.Chain(ms, p.BackupID)
	if err != nil {
		return nil, classify(err)
	}
	if len(chain) != len(ms) {
		return nil, fail(ErrInvalidRequest, "chain %v is not the chain of %s", p.Chain, p.BackupID)
	}
	return chain, nil
}

func (a *Agent) restoreTool(instance string, full *manifest.Manifest) (*physical.Tool, error) {
	var paths physical.Paths
	if in, err := a.Config.Instance(instance); err == nil {
		paths = toolPaths(in)
	}
	flavor := mysqlx.FlavorMariaDB
	if full.Tool == "xtrabackup" {
		flavor = mysqlx.FlavorMySQL
	}
	tool, err := physical.ForFlavor(flavor, paths)
	return tool, classify(err)
}

// chainSpace estimates the disk a restore needs: the full plus the largest
// incremental staged beside it.
func chainSpace(chain []*manifest.Manifest) int64 {
	need := chain[0].RawSize
	var inc int64
	for _, m := range chain[1:] {
		inc = max(inc, m.RawSize)
	}
	return need + inc
}

func (a *Agent) prepareMemory(instance string) int64 {
	if in, err := a.Config.Instance(instance); err == nil {
		return int64(in.Backup.UseMemory)
	}
	return int64(a.Config.Defaults.UseMemory)
}

// fetch downloads, verifies and extracts one backup's stream into dir.
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
				hb.update(ctx, RestoreProgress{Phase: "downloading", BackupID: m.BackupID, Chunks: pr.Chunks, RawBytes: pr.RawBytes})
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
