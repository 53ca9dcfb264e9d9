package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/restore"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/tracing"
	"github.com/strata-backup/strata/internal/xbstream"
)

// RestoreBackup restores a chain (a full, then its incrementals or its
// differential) into the target datadir with the resumable engine of
// internal/restore, which also applies the target-guard rules. Each member
// is downloaded with every chunk's sha256 verified before it is decrypted
// (an encrypted member's data key is unwrapped with the agent's keyring
// first, and its manifest's MAC checked with it) and decompressed,
// extracted, and prepared onto the base in a staging directory beside the
// target; only then is the result moved into the target. A retry resumes
// after the last member that was fully applied, and downloads only the
// chunks of the member being fetched that the interrupted attempt did not
// already keep in the staging dir's chunk cache. A restore that is
// cancelled or finally fails removes its staging dir.
func (a *Agent) RestoreBackup(ctx context.Context, p RestoreParams) (*RestoreStats, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("backup_id", p.BackupID), zap.String("target_dir", p.TargetDir))
	ctx = tracing.IDs(ctx, p.Instance, p.BackupID) // on the data path's spans
	if !filepath.IsAbs(p.TargetDir) {
		return nil, fail(ErrInvalidRequest, "target_dir %q must be an absolute path on host %s", p.TargetDir, a.Host)
	}
	if len(p.Chain) == 0 || p.Chain[len(p.Chain)-1] != p.BackupID {
		return nil, fail(ErrInvalidRequest, "chain must list the backups from the full to %s (RestoreWorkflow resolves it)", p.BackupID)
	}
	target := filepath.Clean(p.TargetDir)
	wf := activity.GetInfo(ctx).WorkflowExecution
	owner := restore.Owner{WorkflowID: wf.ID, RunID: wf.RunID}
	stats, err := a.restoreChain(ctx, p, target, owner, log)
	if err != nil {
		err = restoreError(err)
		if final, why := finalRestoreFailure(ctx, err, p.MaxAttempts); final {
			if derr := restore.Discard(target, owner); derr != nil {
				log.Warn("could not remove the staging dir of a failed restore", zap.Error(derr))
			} else {
				log.Info("removed the staging dir of the failed restore", zap.String("because", why))
			}
		}
		return nil, asCancel(ctx, err)
	}
	return stats, nil
}

// finalRestoreFailure is finalFailure, counting a retryable failure of the
// last attempt (maxAttempts > 0) as final too.
func finalRestoreFailure(ctx context.Context, err error, maxAttempts int) (bool, string) {
	final, why := finalFailure(ctx, err)
	if !final && ctx.Err() == nil && maxAttempts > 0 && int(activity.GetInfo(ctx).Attempt) >= maxAttempts {
		return true, "it was the last attempt"
	}
	return final, why
}

// restoreError types the engine's target-guard errors.
func restoreError(err error) error {
	switch {
	case errors.Is(err, restore.ErrTargetNotDir):
		return fail(ErrInvalidTarget, "%v", err)
	case errors.Is(err, restore.ErrTargetInUse):
		return fail(ErrTargetInUse, "%v", err)
	case errors.Is(err, restore.ErrTargetNotEmpty):
		return fail(ErrTargetNotEmpty, "%v", err)
	case errors.Is(err, restore.ErrInsufficientSpace):
		return fail(ErrInsufficientSpace, "%v", err)
	}
	return classify(err)
}

func (a *Agent) restoreChain(ctx context.Context, p RestoreParams, target string, owner restore.Owner, log *zap.Logger) (*RestoreStats, error) {
	chain, err := a.loadChain(ctx, p)
	if err != nil {
		return nil, err
	}
	if chain[0].Type == manifest.TypeLogical {
		if len(chain) != 1 {
			return nil, fail(ErrBrokenChain, "logical backup %s of %s has no chain: restore it alone", chain[0].BackupID, p.Instance)
		}
		ciphers, err := a.chainCiphers(ctx, chain, p.AllowUnencrypted, log)
		if err != nil {
			return nil, err
		}
		return a.restoreLogical(ctx, p, chain[0], ciphers[0], target, owner, log)
	}
	if len(p.Include)+len(p.Exclude)+len(p.Rename) > 0 {
		return nil, fail(ErrInvalidRequest, "backup %s of %s is a physical backup: include, exclude and rename select tables of a logical backup (for one table of a physical backup, use strata restore --table)", p.BackupID, p.Instance)
	}
	tool, err := a.restoreTool(p.Instance, chain)
	if err != nil {
		return nil, err
	}
	if tool == nil && len(chain) > 1 {
		return nil, fail(ErrBrokenChain, "backup %s of %s is not a full backup but its chain starts at clone backup %s: %v", p.BackupID, p.Instance, chain[0].BackupID, physical.ErrCloneIncremental)
	}
	// Every member's data key, before anything is touched: a missing key
	// fails now, naming the keys the backup has and the agent has; so does
	// an unencrypted member that the instance's config does not allow, or a
	// manifest that does not authenticate.
	ciphers, err := a.chainCiphers(ctx, chain, p.AllowUnencrypted, log)
	if err != nil {
		return nil, err
	}
	hb := startHeartbeat(ctx, a.heartbeatEvery(), RestoreProgress{Phase: "starting"})
	defer hb.close()
	stats := &RestoreStats{TargetDir: target}
	for _, m := range chain {
		stats.RawBytes += m.RawSize
	}
	mem := a.prepareMemory(p.Instance)
	var cache *pipeline.ChunkCache
	prefix := func(i int) string { return repo.BackupPrefix(chain[i].Instance, chain[i].BackupID) }
	t0 := time.Now()
	res, err := restore.Run(ctx, restore.Job{Target: target, Owner: owner, BackupID: p.BackupID, Chain: p.Chain, Space: restore.ChainSpace(chain)}, restore.Steps{
		// Chunks are cached in the staging dir as they are downloaded, so
		// that a retry of an interrupted download fetches only what it did
		// not have.
		Staged: func(dir string) (err error) {
			cache, err = pipeline.NewChunkCache(a.Repo.Backend(), dir, a.Limiter)
			return err
		},
		Fetch: func(ctx context.Context, i int, dir string) error {
			m := chain[i]
			t0 := time.Now()
			cache.Add(prefix(i), m.Chunks)
			d0, c0 := cache.Stats()
			err := a.fetch(ctx, m, cache, ciphers[i], tool, dir, hb)
			d1, c1 := cache.Stats()
			stats.DownloadedBytes += d1 - d0
			stats.CachedBytes += c1 - c0
			if err != nil {
				return fetchError(m, err)
			}
			stats.FetchSeconds += time.Since(t0).Seconds()
			log.Info("chain member downloaded", zap.String("member", m.BackupID), zap.Int64("downloaded_bytes", d1-d0),
				zap.Int64("cached_bytes", c1-c0))
			return nil
		},
		Prepare: func(ctx context.Context, i int, base, inc string) error {
			if tool == nil {
				return nil // a clone is consistent as it is
			}
			hb.update(ctx, RestoreProgress{Phase: "preparing", BackupID: chain[i].BackupID})
			t0 := time.Now()
			_, span := tracing.Start(ctx, tracing.SpanPrepare, attribute.String("member", chain[i].BackupID),
				attribute.Int64(tracing.AttrBytes, chain[i].RawSize))
			err := tool.Prepare(ctx, base, inc, i < len(chain)-1, mem, nil)
			tracing.End(span, err)
			if err != nil {
				return err
			}
			stats.PrepareSeconds += time.Since(t0).Seconds()
			return nil
		},
		Applied: func(i int) {
			// A retry resumes after this member: its chunks are not needed again.
			if err := cache.Remove(prefix(i)); err != nil {
				log.Warn("could not remove cached chunks", zap.String("member", chain[i].BackupID), zap.Error(err))
			}
			log.Info("chain member applied", zap.String("member", chain[i].BackupID), zap.String("type", chain[i].Type),
				zap.Int("step", i+1), zap.Int("of", len(chain)))
		},
		MoveBack: func(ctx context.Context, base, target string) error {
			hb.update(ctx, RestoreProgress{Phase: "moving back"})
			t0 = time.Now()
			_, span := tracing.Start(ctx, tracing.SpanMoveBack, attribute.Int64(tracing.AttrBytes, stats.RawBytes))
			var err error
			if tool == nil {
				err = physical.MoveClone(base, target)
			} else {
				err = tool.MoveBack(ctx, base, target, nil)
			}
			tracing.End(span, err)
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	if res.AlreadyDone {
		return &RestoreStats{TargetDir: target}, nil
	}
	if res.Resumed > 0 {
		log.Info("resumed restore", zap.Int("applied", res.Resumed), zap.Int("chain", len(chain)))
	}
	stats.MoveBackSeconds = time.Since(t0).Seconds()
	log.Info("restore complete", zap.Float64("fetch_seconds", stats.FetchSeconds), zap.Float64("prepare_seconds", stats.PrepareSeconds),
		zap.Float64("move_back_seconds", stats.MoveBackSeconds), zap.Int64("downloaded_bytes", stats.DownloadedBytes),
		zap.Int64("cached_bytes", stats.CachedBytes), zap.Int64("prepare_memory", mem))
	return stats, nil
}

// fetchError sorts a failed download: data that does not match its
// checksums (or a missing chunk) is a corrupt backup, and a key that does not
// open it is a key problem — neither gets better by retrying, and the target
// was not touched; anything else (a storage hiccup) is retried.
func fetchError(m *manifest.Manifest, err error) error {
	switch {
	case errors.Is(err, pipeline.ErrCorrupt), errors.Is(err, storage.ErrNotFound), errors.Is(err, xbstream.ErrCorrupt):
		msg := fmt.Sprintf("backup %s of %s is corrupt: %v; the target was not touched (run strata verify %s)", m.BackupID, m.Instance, err, m.Instance)
		var ce *pipeline.ChunkError
		if errors.As(err, &ce) {
			// The chunk's key in the repository, for the drill's report.
			return temporal.NewNonRetryableApplicationError(msg, ErrCorruptBackup, nil, CorruptChunk{Key: repo.BackupPrefix(m.Instance, m.BackupID) + ce.Key})
		}
		return fail(ErrCorruptBackup, "%s", msg)
	case errors.Is(err, crypt.ErrDecrypt), errors.Is(err, pipeline.ErrEncrypted), errors.Is(err, crypt.ErrNotEncrypted):
		return fail(ErrDecryptFailed, "backup %s of %s cannot be decrypted: %v", m.BackupID, m.Instance, err)
	}
	return classify(err)
}

// chainCiphers returns the cipher of each chain member (nil for an
// unencrypted one), unwrapping each encrypted member's data key with the
// agent's keyring and checking the member's manifest MAC with it. No usable
// key is a DecryptFailed error. For an instance with encryption enabled, an
// unencrypted member, or an encrypted one whose manifest has no MAC, is
// refused unless allowUnencrypted: a writer of the bucket could have
// planted it. A MAC that does not match is refused always.
func (a *Agent) chainCiphers(ctx context.Context, chain []*manifest.Manifest, allowUnencrypted bool, log *zap.Logger) ([]*crypt.ChunkCipher, error) {
	out := make([]*crypt.ChunkCipher, len(chain))
	for i, m := range chain {
		if !m.Encrypted {
			if required, why := a.encryptionRequired(m.Instance); required {
				if !allowUnencrypted {
					return nil, fail(ErrUnencrypted, "backup %s of %s (%s) is not encrypted, but %s: it may have been planted by a writer of the bucket; if it is old data taken before encryption was enabled, restore it with --allow-unencrypted (allow_unencrypted in the RestoreWorkflow input)",
						m.BackupID, m.Instance, repo.ManifestKey(m.Instance, m.BackupID), why)
				}
				log.Warn("restoring an unencrypted backup of an instance with encryption enabled, as allowed", zap.String("member", m.BackupID))
			}
			continue
		}
		dk, _, err := a.Repo.BackupKeys(m.Instance, m.BackupID).Unwrap(ctx, a.Keys)
		if err != nil {
			if errors.Is(err, repo.ErrNoUsableKey) {
				msg := fmt.Sprintf("cannot restore %s of %s on agent %s: %v", m.BackupID, m.Instance, a.Host, err)
				if repo.IsKeyNotHeld(err) {
					// The agent's keyring, not the backup: a drill must not
					// condemn the backup for it.
					return nil, temporal.NewNonRetryableApplicationError(msg, ErrDecryptFailed, nil, KeyNotHeld{Agent: a.Host})
				}
				return nil, fail(ErrDecryptFailed, "%s", msg)
			}
			return nil, classify(err)
		}
		switch err := repo.CheckManifestMAC(m, dk); {
		case errors.Is(err, repo.ErrManifestNoMAC) && allowUnencrypted:
			log.Warn("restoring a backup whose manifest carries no MAC, as allowed", zap.String("member", m.BackupID))
		case errors.Is(err, repo.ErrManifestNoMAC):
			return nil, fail(ErrUnauthenticated, "%v; if it is an old backup, restore it with --allow-unencrypted (allow_unencrypted in the RestoreWorkflow input)", err)
		case err != nil:
			return nil, fail(ErrUnauthenticated, "%v", err)
		}
		if out[i], err = crypt.NewChunkCipher(dk, m.BackupID); err != nil {
			return nil, fail(ErrDecryptFailed, "backup %s of %s: %v", m.BackupID, m.Instance, err)
		}
	}
	return out, nil
}

// encryptionRequired reports whether backups of instance must be encrypted
// on this agent, and why: the instance's config says so, or, for an
// instance this agent's config does not list (a restore on another host),
// the agent has key encryption keys. A writer of the bucket cannot then
// get a planted unencrypted backup restored by restoring on a host whose
// config lacks the instance.
func (a *Agent) encryptionRequired(instance string) (bool, string) {
	if in, err := a.Config.Instance(instance); err == nil {
		return in.EncryptionEnabled(), fmt.Sprintf("instance %s has encryption enabled", instance)
	}
	return a.Keys != nil, fmt.Sprintf("instance %s is not in agent %s's config and the agent has key encryption keys", instance, a.Host)
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

// restoreTool is the tool that extracts and prepares the chain: nil for
// a clone backup, which Strata extracts itself and which needs no prepare
// step.
func (a *Agent) restoreTool(instance string, chain []*manifest.Manifest) (*physical.Tool, error) {
	var paths physical.Paths
	if in, err := a.Config.Instance(instance); err == nil {
		paths = toolPaths(in)
	}
	return restoreToolFor(chain, paths)
}

// restoreToolFor picks the tool that restores a chain (its full first):
// the one for the flavor its manifests record (manifest.Flavor), never
// the one their tool field names. Members of different flavors are no
// chain.
func restoreToolFor(chain []*manifest.Manifest, paths physical.Paths) (*physical.Tool, error) {
	if len(chain) == 0 {
		return nil, fail(ErrInvalidRequest, "no backup to restore")
	}
	f, err := chain[0].Flavor()
	if err != nil {
		return nil, fail(ErrCorruptBackup, "%v", err)
	}
	for _, m := range chain[1:] {
		mf, err := m.Flavor()
		if err != nil {
			return nil, fail(ErrCorruptBackup, "%v", err)
		}
		if mf.Name != f.Name {
			return nil, fail(ErrBrokenChain, "backup %s is of a %s server but its full backup %s is of a %s server: they are no chain",
				m.BackupID, mf.Name, chain[0].BackupID, f.Name)
		}
	}
	if chain[0].Tool == physical.ToolClone {
		// The method (the stream's format and whether it is prepared) is
		// what the tool field records; the server is still the flavor's.
		if f.Name != flavor.MySQL {
			return nil, fail(ErrCorruptBackup, "backup %s of %s records tool clone but a %s server: clone backups are of MySQL", chain[0].BackupID, chain[0].Instance, f.Name)
		}
		return nil, nil
	}
	tool, err := physical.ForFlavor(f.Name, paths)
	return tool, classify(err)
}

// prepareMemory is the --use-memory of a restore's --prepare: the
// instance's prepare_memory, or, unset, derived from this host.
func (a *Agent) prepareMemory(instance string) int64 {
	configured := int64(a.Config.Defaults.UseMemory)
	if in, err := a.Config.Instance(instance); err == nil {
		configured = int64(in.Backup.UseMemory)
	}
	return physical.PrepareMemory(configured)
}

// fetch downloads (through b, the chunk cache), verifies, decrypts (with
// cipher, nil for an unencrypted backup) and extracts one backup's stream
// into dir (with the tool's extractor, or, for a clone backup, tool nil,
// with Strata's own). The bandwidth limit is applied by the cache, to the
// bytes it reads from the repository.
func (a *Agent) fetch(ctx context.Context, m *manifest.Manifest, b storage.Backend, cipher *crypt.ChunkCipher, tool *physical.Tool, dir string, hb *heartbeater) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	member := attribute.String("member", m.BackupID)
	_, xspan := tracing.Start(ctx, tracing.SpanExtract, member, attribute.Int64(tracing.AttrBytes, m.RawSize))
	var x io.WriteCloser
	var wait func() error
	var err error
	if tool == nil {
		x, wait = physical.CloneExtractor(dir)
	} else if x, wait, err = tool.Extract(cctx, dir, a.parallelism(m.Instance)); err != nil {
		tracing.End(xspan, err)
		return err
	}
	// Member names are checked before the extractor, which writes them, sees them.
	w := xbstream.NewChecker(x)
	_, dspan := tracing.Start(cctx, tracing.SpanDownload, member, attribute.Int64(tracing.AttrBytes, m.StoredSize),
		attribute.Int64("raw_bytes", m.RawSize))
	_, derr := pipeline.Download(cctx, b, repo.BackupPrefix(m.Instance, m.BackupID), m.Chunks, m.Compression, w,
		pipeline.DownloadOptions{
			Parallelism:     a.parallelism(m.Instance),
			ExpectRawSHA256: m.RawSHA256,
			Cipher:          cipher,
			Progress: func(pr pipeline.Progress) {
				hb.update(ctx, RestoreProgress{Phase: "downloading", BackupID: m.BackupID, Chunks: pr.Chunks, RawBytes: pr.RawBytes})
			},
		})
	tracing.End(dspan, derr)
	if derr != nil {
		cancel() // kill the extractor
	}
	cerr := w.Close()
	werr := wait()
	tracing.End(xspan, werr)
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
