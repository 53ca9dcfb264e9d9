package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/strata-backup/strata/internal/replay"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/xbstream"
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
// decrypted (an encrypted member's data key is unwrapped with the agent's
// keyring first) and decompressed, extracted, and prepared onto the base in
// a staging directory beside the target; only then is the result moved into
// the target. A retry resumes after the last member that was fully applied,
// and downloads only the chunks of the member being fetched that the
// interrupted attempt did not already keep in the staging dir's chunk cache.
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
	// Every member's data key, before anything is touched: a missing key
	// fails now, naming the keys the backup has and the agent has.
	ciphers, err := a.chainCiphers(ctx, chain)
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
			return nil, fmt.Errorf("clear partially restored target: %w", err)
		}
		st = restoreState{}
	}
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	resumable := st.Phase == phasePrepared || (st.Phase == phaseFetching && st.Applied > 0)
	if !st.matches(p) || !resumable {
		// Nothing reusable, or a prepare was interrupted half-way and base/
		// may be half-applied: start from the full. The chunk cache of a
		// retry of this same restore is kept: its chunks need no download.
		keepCache := st.matches(p)
		st = restoreState{BackupID: p.BackupID, Chain: p.Chain}
		if err := checkSpace(filepath.Dir(target), chainSpace(chain)); err != nil {
			return nil, err
		}
		if err := clearStaging(staging, keepCache); err != nil {
			return nil, fmt.Errorf("clear staging dir: %w", err)
		}
		if err := os.MkdirAll(staging, 0o750); err != nil {
			return nil, classify(fmt.Errorf("create staging dir %s: %w", staging, err))
		}
	} else {
		log.Info("resuming restore", zap.Int("applied", st.Applied), zap.Int("chain", len(chain)))
	}
	// Chunks are cached in the staging dir as they are downloaded, so that a
	// retry of an interrupted download fetches only what it did not have.
	cache, err := pipeline.NewChunkCache(a.Repo.Backend(), filepath.Join(staging, "cache"), a.Limiter)
	if err != nil {
		return nil, classify(err)
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
		prefix := repo.BackupPrefix(m.Instance, m.BackupID)
		cache.Add(prefix, m.Chunks)
		d0, c0 := cache.Stats()
		err := a.fetch(ctx, m, cache, ciphers[i], tool, dir, hb)
		d1, c1 := cache.Stats()
		stats.DownloadedBytes += d1 - d0
		stats.CachedBytes += c1 - c0
		if err != nil {
			return nil, fetchError(m, staging, err)
		}
		stats.FetchSeconds += time.Since(t0).Seconds()
		log.Info("chain member downloaded", zap.String("member", m.BackupID), zap.Int64("downloaded_bytes", d1-d0),
			zap.Int64("cached_bytes", c1-c0))

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
		// A retry resumes after this member: its chunks are not needed again.
		if err := cache.Remove(prefix); err != nil {
			log.Warn("could not remove cached chunks", zap.String("member", m.BackupID), zap.Error(err))
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
		zap.Float64("move_back_seconds", stats.MoveBackSeconds), zap.Int64("downloaded_bytes", stats.DownloadedBytes),
		zap.Int64("cached_bytes", stats.CachedBytes))
	return stats, nil
}

// fetchError sorts a failed download: data that does not match its
// checksums (or a missing chunk) is a corrupt backup, and a key that does not
// open it is a key problem — neither gets better by retrying, and the target
// was not touched; anything else (a storage hiccup) is retried.
func fetchError(m *manifest.Manifest, staging string, err error) error {
	switch {
	case errors.Is(err, pipeline.ErrCorrupt), errors.Is(err, storage.ErrNotFound), errors.Is(err, xbstream.ErrCorrupt):
		_ = os.RemoveAll(staging)
		return fail(ErrCorruptBackup, "backup %s of %s is corrupt: %v; the target was not touched (run strata verify %s)", m.BackupID, m.Instance, err, m.Instance)
	case errors.Is(err, crypt.ErrDecrypt), errors.Is(err, pipeline.ErrEncrypted), errors.Is(err, crypt.ErrNotEncrypted):
		_ = os.RemoveAll(staging)
		return fail(ErrDecryptFailed, "backup %s of %s cannot be decrypted: %v", m.BackupID, m.Instance, err)
	}
	return classify(err)
}

// chainCiphers returns the cipher of each chain member (nil for an
// unencrypted one), unwrapping each encrypted member's data key with the
// agent's keyring. No usable key is a DecryptFailed error.
func (a *Agent) chainCiphers(ctx context.Context, chain []*manifest.Manifest) ([]*crypt.ChunkCipher, error) {
	out := make([]*crypt.ChunkCipher, len(chain))
	for i, m := range chain {
		if !m.Encrypted {
			continue
		}
		dk, _, err := a.Repo.BackupKeys(m.Instance, m.BackupID).Unwrap(ctx, a.Keys)
		if err != nil {
			if errors.Is(err, repo.ErrNoUsableKey) {
				return nil, fail(ErrDecryptFailed, "cannot restore %s of %s on agent %s: %v", m.BackupID, m.Instance, a.Host, err)
			}
			return nil, classify(err)
		}
		if out[i], err = crypt.NewChunkCipher(dk, m.BackupID); err != nil {
			return nil, fail(ErrDecryptFailed, "backup %s of %s: %v", m.BackupID, m.Instance, err)
		}
	}
	return out, nil
}

// clearStaging empties the staging dir, keeping its chunk cache if asked.
func clearStaging(staging string, keepCache bool) error {
	if !keepCache {
		return os.RemoveAll(staging)
	}
	entries, err := os.ReadDir(staging)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "cache" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(staging, e.Name())); err != nil {
			return err
		}
	}
	return nil
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
// incremental staged beside it, plus the largest member's chunks in the
// download cache.
func chainSpace(chain []*manifest.Manifest) int64 {
	need := chain[0].RawSize
	var inc, cached int64
	for i, m := range chain {
		if i > 0 {
			inc = max(inc, m.RawSize)
		}
		cached = max(cached, m.StoredSize)
	}
	return need + inc + cached
}

func (a *Agent) prepareMemory(instance string) int64 {
	if in, err := a.Config.Instance(instance); err == nil {
		return int64(in.Backup.UseMemory)
	}
	return int64(a.Config.Defaults.UseMemory)
}

// fetch downloads (through b, the chunk cache), verifies, decrypts (with
// cipher, nil for an unencrypted backup) and extracts one backup's stream
// into dir. The bandwidth limit is applied by the cache, to the bytes it
// reads from the repository.
func (a *Agent) fetch(ctx context.Context, m *manifest.Manifest, b storage.Backend, cipher *crypt.ChunkCipher, tool *physical.Tool, dir string, hb *heartbeater) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	x, wait, err := tool.Extract(cctx, dir)
	if err != nil {
		return err
	}
	// Member names are checked before the extractor, which writes them, sees them.
	w := xbstream.NewChecker(x)
	_, derr := pipeline.Download(cctx, b, repo.BackupPrefix(m.Instance, m.BackupID), m.Chunks, m.Compression, w,
		pipeline.DownloadOptions{
			Parallelism:     a.parallelism(m.Instance),
			ExpectRawSHA256: m.RawSHA256,
			Cipher:          cipher,
			Progress: func(pr pipeline.Progress) {
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
		return derr
	case cerr != nil && !errors.Is(cerr, os.ErrClosed):
		return fmt.Errorf("close extractor input: %w", cerr)
	case werr != nil:
		return werr
	}
	return nil
}

func (a *Agent) parallelism(instance string) int {
	if in, err := a.Config.Instance(instance); err == nil {
		return in.Backup.Parallelism
	}
	return a.Config.Defaults.Parallelism
}

// checkTarget requires the target datadir to be absent or empty. A datadir
// that a point-in-time replay left unfinished is Strata's own and is
// cleared, so that the restore can start over.
func checkTarget(target string) error {
	if _, err := os.Stat(filepath.Join(target, replay.Marker)); err == nil {
		if err := server.KillStale(context.Background(), target); err != nil {
			return err
		}
		if err := clearDir(target); err != nil {
			return fmt.Errorf("clear the datadir of an interrupted replay: %w", err)
		}
	}
	f, err := os.Open(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return classify(fmt.Errorf("open target dir %s: %w", target, err))
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read target dir %s: %w", target, err)
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
