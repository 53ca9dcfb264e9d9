package activities

import (
	"context"
	"fmt"
	"strings"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
)

// PlanBackup decides the type and base of the next backup from the catalog
// in the repository, so that agents keep no local state: an incremental
// builds on the newest complete backup, a differential on the newest full,
// and a chain longer than backup.max_chain_length becomes a full.
func (c *Catalog) PlanBackup(ctx context.Context, req PlanRequest) (*BackupPlan, error) {
	in, err := c.cfg().Instance(req.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	switch req.Type {
	case manifest.TypeFull, manifest.TypeLogical:
		return &BackupPlan{Type: req.Type, ChainLength: 1}, nil
	case manifest.TypeIncremental, manifest.TypeDifferential:
	default:
		return nil, fail(ErrInvalidRequest, "backup type %q is not one of %s", req.Type, manifest.BackupTypes)
	}
	all, err := c.Repo.ListBackups(ctx, req.Instance)
	if err != nil {
		return nil, classify(err) // an invalid manifest is CorruptBackup
	}
	failed, err := c.failedDrills(ctx, req.Instance)
	if err != nil {
		return nil, err
	}
	var base *manifest.Manifest
	var skipped []string
	for i := len(all) - 1; i >= 0 && base == nil; i-- {
		if all[i].Type == manifest.TypeLogical {
			continue // a logical dump has no pages to build on
		}
		if req.Type == manifest.TypeIncremental || all[i].Type == manifest.TypeFull {
			// Never build on a backup whose drill failed.
			if r := failedInChain(all, all[i].BackupID, failed); r != nil {
				skipped = append(skipped, describeFailed(all[i].BackupID, r))
				continue
			}
			base = all[i]
		}
	}
	skipNote := ""
	if len(skipped) > 0 {
		skipNote = " (skipped: " + strings.Join(skipped, "; ") + ")"
	}
	if base == nil {
		what := "complete backup"
		if req.Type == manifest.TypeDifferential {
			what = "full backup"
		}
		note := fmt.Sprintf("instance %s has no %s to base the %s backup on%s", req.Instance, what, req.Type, skipNote)
		if !req.AutoFull {
			return nil, fail(ErrNoBase, "%s; take a full backup first (strata backup %s --type full) or pass --auto-full", note, req.Instance)
		}
		return &BackupPlan{Type: manifest.TypeFull, ChainLength: 1, Note: note + ": taking a full"}, nil
	}
	chain, err := repo.Chain(all, base.BackupID)
	if err != nil {
		if req.AutoFull {
			return &BackupPlan{Type: manifest.TypeFull, ChainLength: 1, Note: fmt.Sprintf("base %s is unusable (%v): taking a full", base.BackupID, err)}, nil
		}
		return nil, fail(ErrBrokenChain, "cannot base a %s on %s: %v; take a full backup", req.Type, base.BackupID, err)
	}
	if in.EncryptionEnabled() {
		// An encrypted incremental on an unencrypted base makes a chain
		// that a restore refuses (it may be planted): start a new chain.
		for _, m := range chain {
			if m.Encrypted {
				continue
			}
			note := fmt.Sprintf("base %s is in a chain with unencrypted backup %s, but instance %s has encryption enabled", base.BackupID, m.BackupID, req.Instance)
			if req.AutoFull {
				return &BackupPlan{Type: manifest.TypeFull, ChainLength: 1, Note: note + ": taking a full"}, nil
			}
			return nil, fail(ErrUnencrypted, "cannot base a %s on it: %s; take a full backup (strata backup %s --type full) or pass --auto-full", req.Type, note, req.Instance)
		}
	}
	length := len(chain) + 1
	if req.Type == manifest.TypeDifferential {
		length = 2
	}
	if max := in.Backup.MaxChainLength; max > 0 && length > max {
		return &BackupPlan{Type: manifest.TypeFull, ChainLength: 1,
			Note: fmt.Sprintf("a %s would make a chain of %d backups, more than max_chain_length %d: taking a full", req.Type, length, max)}, nil
	}
	plan := &BackupPlan{Type: req.Type, ParentID: base.BackupID, FromLSN: base.ToLSN, ChainLength: length}
	if skipNote != "" {
		plan.Note = "based on " + base.BackupID + skipNote
	}
	return plan, nil
}

// ResolveChain returns the summaries of the backups needed to restore a
// backup, full first, after checking every link.
func (c *Catalog) ResolveChain(ctx context.Context, ref BackupRef) ([]BackupSummary, error) {
	all, err := c.Repo.ListBackups(ctx, ref.Instance)
	if err != nil {
		return nil, classify(err) // an invalid manifest is CorruptBackup
	}
	chain, err := repo.Chain(all, ref.BackupID)
	if err == nil && !ref.AllowFailedDrill {
		failed, ferr := c.failedDrills(ctx, ref.Instance)
		if ferr != nil {
			return nil, ferr
		}
		if r := failedInChain(all, ref.BackupID, failed); r != nil {
			return nil, fail(ErrFailedDrill, "instance %s: %s; restore it only with --allow-failed-drill (allow_failed_drill), or pick another backup", ref.Instance, describeFailed(r.BackupID, r))
		}
	}
	if err != nil {
		if _, rerr := c.Repo.ReadManifest(ctx, ref.Instance, ref.BackupID); rerr != nil {
			return nil, classify(rerr) // names the instance and repository
		}
		return nil, classify(err)
	}
	out := make([]BackupSummary, len(chain))
	for i, m := range chain {
		out[i] = *Summarize(m)
	}
	return out, nil
}
