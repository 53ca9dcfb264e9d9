package repo

import (
	"errors"
	"fmt"

	"github.com/strata-backup/strata/internal/manifest"
)

// ErrBrokenChain is wrapped when a backup's chain cannot be restored: a
// parent is missing, of the wrong type, or its LSN range does not meet.
var ErrBrokenChain = errors.New("broken backup chain")

// Chain returns the backups needed to restore id, from its full backup to id
// itself, checking every link: each parent exists, a differential's parent is
// a full, and each backup starts at the LSN where its parent ended.
func Chain(all []*manifest.Manifest, id string) ([]*manifest.Manifest, error) {
	byID := make(map[string]*manifest.Manifest, len(all))
	for _, m := range all {
		byID[m.BackupID] = m
	}
	m, ok := byID[id]
	if !ok {
		return nil, &notFoundError{msg: fmt.Sprintf("backup %q not found", id)}
	}
	var rev []*manifest.Manifest
	seen := map[string]bool{}
	for {
		if seen[m.BackupID] {
			return nil, fmt.Errorf("%w: backup %s is its own ancestor", ErrBrokenChain, m.BackupID)
		}
		seen[m.BackupID] = true
		rev = append(rev, m)
		if manifest.IsRoot(m.Type) {
			break
		}
		p, ok := byID[m.ParentID]
		if !ok {
			return nil, fmt.Errorf("%w: %s backup %s needs parent %s, which is not in the repository", ErrBrokenChain, m.Type, m.BackupID, m.ParentID)
		}
		if p.Type == manifest.TypeLogical {
			return nil, fmt.Errorf("%w: %s backup %s has parent %s, a logical backup, which has no pages to build on", ErrBrokenChain, m.Type, m.BackupID, p.BackupID)
		}
		if m.Type == manifest.TypeDifferential && p.Type != manifest.TypeFull {
			return nil, fmt.Errorf("%w: differential backup %s has parent %s of type %s; a differential's parent is a full", ErrBrokenChain, m.BackupID, p.BackupID, p.Type)
		}
		if m.FromLSN != p.ToLSN {
			return nil, fmt.Errorf("%w: backup %s starts at LSN %d but its parent %s ends at LSN %d", ErrBrokenChain, m.BackupID, m.FromLSN, p.BackupID, p.ToLSN)
		}
		m = p
	}
	out := make([]*manifest.Manifest, len(rev))
	for i, m := range rev {
		out[len(rev)-1-i] = m
	}
	return out, nil
}
