// Package verify checks the integrity of a Strata repository: that every
// chunk of a backup is present with the recorded size and sha256, and that
// backup chains are consistent (parents present and of the right type, LSN
// ranges contiguous).
package verify

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
)

// Problem is one integrity problem found in a backup.
type Problem struct {
	BackupID string
	// Chunk is the index of the chunk concerned, or -1 when the problem is
	// not about one chunk (e.g. a missing parent).
	Chunk int
	// Key is the full object key concerned: the chunk's object for a chunk
	// problem, otherwise the backup's manifest.
	Key string
	// What describes the problem, e.g. "sha256 mismatch: stored data is
	// corrupt" or "parent X is missing".
	What string
}

// String formats the problem for humans.
func (p Problem) String() string {
	if p.BackupID == "" {
		return fmt.Sprintf("binlog archive: %s: %s", p.Key, p.What)
	}
	if p.Chunk >= 0 {
		return fmt.Sprintf("backup %s: chunk %d (%s): %s", p.BackupID, p.Chunk, p.Key, p.What)
	}
	return fmt.Sprintf("backup %s: %s", p.BackupID, p.What)
}

// Report is the outcome of a verification.
type Report struct {
	Instance string
	// Checked lists the backups verified, oldest first.
	Checked []string
	// Chunks and Bytes are the number of chunks and stored bytes of the
	// checked backups, as recorded in their manifests.
	Chunks int
	Bytes  int64
	// Segments and SegmentBytes count the archived binlog segments read
	// back (Archive) and their stored bytes; Windows the recovery windows
	// they make up.
	Segments     int
	SegmentBytes int64
	Windows      int
	// Problems lists every problem found, sorted by backup ID then chunk
	// index (the archive's, with an empty backup ID, first).
	Problems []Problem
}

// OK reports whether the verification found no problem.
func (r *Report) OK() bool { return r != nil && len(r.Problems) == 0 }

// Backups verifies backups of instance in repository rp and returns a
// report of the problems found. ids selects the backups to verify (nil or
// empty: all of them); each selected backup is verified together with every
// backup on its chain, since a backup is only as good as its chain. An id
// that does not exist gives an error wrapping repo.ErrBackupNotFound.
//
// For each backup, Backups reads every chunk and checks its size and sha256
// (pipeline.VerifyChunks, with parallelism chunks at a time; 0 means
// GOMAXPROCS), and checks the chain: an incremental or differential has its
// parent in the repository, a differential's parent is a full, FromLSN
// equals the parent's ToLSN, ToLSN >= FromLSN, a full has FromLSN 0 and no
// parent.
//
// progress, if not nil, is called after each backup is verified, with the
// number of backups done and to do. An error is returned only when the
// repository cannot be listed, an id is unknown or ctx is done; problems
// with the backups themselves are in the report.
func Backups(ctx context.Context, rp *repo.Repo, instance string, ids []string, parallelism int, progress func(id string, done, total int), opts ...Option) (*Report, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if rp == nil {
		return nil, fmt.Errorf("verify: nil repository")
	}
	all, invalid, err := rp.ReadManifests(ctx, instance)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	byID := make(map[string]*manifest.Manifest, len(all))
	for _, m := range all {
		byID[m.BackupID] = m
	}
	bad := make(map[string]repo.InvalidManifest, len(invalid))
	for _, im := range invalid {
		bad[im.BackupID] = im
	}

	selected := make(map[string]bool)
	if len(ids) == 0 {
		for _, m := range all {
			selected[m.BackupID] = true
		}
	} else {
		for _, id := range ids {
			m, ok := byID[id]
			if _, isBad := bad[id]; !ok && isBad {
				continue // reported below
			}
			if !ok {
				return nil, fmt.Errorf("verify: backup %q of instance %q not found in %s: %w", id, instance, rp, repo.ErrBackupNotFound)
			}
			// The backup and its chain, as far as it goes (a missing or
			// looping parent is reported by the chain check).
			for m != nil && !selected[m.BackupID] {
				selected[m.BackupID] = true
				if manifest.IsRoot(m.Type) {
					break
				}
				m = byID[m.ParentID]
			}
		}
	}

	rep := &Report{Instance: instance, Checked: []string{}, Problems: []Problem{}}
	for _, im := range invalid {
		if len(ids) == 0 || slices.Contains(ids, im.BackupID) {
			rep.Problems = append(rep.Problems, Problem{BackupID: im.BackupID, Chunk: -1, Key: im.Key,
				What: fmt.Sprintf("the manifest is invalid, the backup cannot be restored: %v", im.Err)})
		}
	}
	var todo []*manifest.Manifest
	for _, m := range all { // oldest first
		if selected[m.BackupID] {
			todo = append(todo, m)
		}
	}
	for i, m := range todo {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		rep.Problems = append(rep.Problems, checkChain(instance, m, byID)...)
		rep.Problems = append(rep.Problems, checkChunks(ctx, rp, instance, m, parallelism)...)
		rep.Problems = append(rep.Problems, checkKeys(ctx, rp, instance, m)...)
		rep.Problems = append(rep.Problems, checkEncrypted(o, m)...)
		if o.keys != nil {
			rep.Problems = append(rep.Problems, checkAuth(ctx, rp, m, o.keys)...)
		}
		if err := ctx.Err(); err != nil {
			// Chunks not read were reported as problems; they are not.
			return nil, fmt.Errorf("verify: %w", err)
		}
		rep.Checked = append(rep.Checked, m.BackupID)
		rep.Chunks += len(m.Chunks)
		for _, c := range m.Chunks {
			rep.Bytes += c.StoredSize
		}
		if progress != nil {
			progress(m.BackupID, i+1, len(todo))
		}
	}
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.BackupID, b.BackupID), cmp.Compare(a.Chunk, b.Chunk))
	})
	return rep, nil
}

// checkChain checks a backup's metadata and its link to its parent.
func checkChain(instance string, m *manifest.Manifest, byID map[string]*manifest.Manifest) []Problem {
	var out []Problem
	add := func(format string, args ...any) {
		out = append(out, Problem{BackupID: m.BackupID, Chunk: -1, Key: repo.ManifestKey(instance, m.BackupID), What: fmt.Sprintf(format, args...)})
	}
	if m.ToLSN < m.FromLSN {
		add("to_lsn %d is lower than from_lsn %d", m.ToLSN, m.FromLSN)
	}
	switch m.Type {
	case manifest.TypeLogical:
		if m.ParentID != "" {
			add("logical backup has parent_id %s (a logical backup has no parent)", m.ParentID)
		}
		return out
	case manifest.TypeFull:
		if m.FromLSN != 0 {
			add("full backup has from_lsn %d (must be 0)", m.FromLSN)
		}
		if m.ParentID != "" {
			add("full backup has parent_id %s (a full has no parent)", m.ParentID)
		}
		return out
	case manifest.TypeIncremental, manifest.TypeDifferential:
	default:
		add("unknown backup type %q", m.Type)
		return out
	}
	parent, ok := byID[m.ParentID]
	if !ok {
		add("parent %s is missing: the %s backup cannot be restored", m.ParentID, m.Type)
		return out
	}
	if parent.Type == manifest.TypeLogical {
		add("parent %s is a logical backup: an incremental or differential builds on a physical backup", parent.BackupID)
		return out
	}
	if m.Type == manifest.TypeDifferential && parent.Type != manifest.TypeFull {
		add("parent %s of a differential backup is %s (must be a full backup)", parent.BackupID, parent.Type)
	}
	if m.FromLSN != parent.ToLSN {
		add("LSN gap: from_lsn %d does not match to_lsn %d of parent %s", m.FromLSN, parent.ToLSN, parent.BackupID)
	}
	// A loop of parents never reaches a full.
	seen := map[string]bool{m.BackupID: true}
	for p := parent; !manifest.IsRoot(p.Type); {
		if seen[p.BackupID] {
			add("the chain of parents loops back to %s and never reaches a full backup", p.BackupID)
			break
		}
		seen[p.BackupID] = true
		next, ok := byID[p.ParentID]
		if !ok {
			break // reported on p
		}
		p = next
	}
	return out
}

// checkChunks reads every chunk of a backup and maps each chunk error to a
// Problem.
func checkChunks(ctx context.Context, rp *repo.Repo, instance string, m *manifest.Manifest, parallelism int) []Problem {
	prefix := repo.BackupPrefix(instance, m.BackupID)
	var out []Problem
	for _, ce := range pipeline.VerifyChunks(ctx, rp.Backend(), prefix, m.Chunks, m.Compression, parallelism) {
		p := Problem{BackupID: m.BackupID, Chunk: ce.Index, What: ce.Reason}
		if ce.Err != nil {
			p.What += ": " + ce.Err.Error()
		}
		if ce.Index >= 0 {
			p.Key = prefix + ce.Key
		} else {
			p.Key = repo.ManifestKey(instance, m.BackupID)
		}
		out = append(out, p)
	}
	return out
}

// checkKeys checks that an encrypted backup has its wrapped data key: at
// least one valid key object under keys/. Without one it cannot be
// decrypted by anyone.
func checkKeys(ctx context.Context, rp *repo.Repo, instance string, m *manifest.Manifest) []Problem {
	if !m.Encrypted {
		return nil
	}
	ks := rp.BackupKeys(instance, m.BackupID)
	objs, err := ks.List(ctx)
	switch {
	case err != nil:
		return []Problem{{BackupID: m.BackupID, Chunk: -1, Key: ks.Prefix, What: fmt.Sprintf("cannot read the wrapped data key: %v", err)}}
	case len(objs) == 0:
		return []Problem{{BackupID: m.BackupID, Chunk: -1, Key: ks.Prefix,
			What: fmt.Sprintf("the backup is encrypted but has no key object under %s: its data key is lost, it cannot be decrypted", ks.Prefix)}}
	}
	return nil
}
