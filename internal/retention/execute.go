package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
)

// ErrStalePlan is returned (wrapped) by Execute when the repository no longer
// matches the plan: a backup that the plan does not delete now depends on
// one that it deletes (for example a backup written since the plan was
// computed), or the plan would delete a parent before its child.
var ErrStalePlan = errors.New("retention plan does not match the repository")

// Execute deletes the backups of plan.Delete from instance's repository, in
// plan order, and returns the actions carried out (with dryRun, the actions
// that would be carried out, deleting nothing). progress, if not nil, is
// called after each backup is deleted (with dryRun, for each backup that
// would be).
//
// Each backup is deleted in two steps: first its manifest, so that it is no
// longer listed, then its data. A crash in between leaves an unlisted
// partial upload, which GCPartial removes later.
//
// Before deleting anything, Execute lists the repository's backups and
// refuses, with an error wrapping ErrStalePlan, if a backup that would remain
// depends on one to be deleted, or if the plan deletes a parent before its
// child. Backups of the plan that are already gone are deleted again without
// error. On error, Execute returns the actions completed so far.
func Execute(ctx context.Context, r *repo.Repo, instance string, plan *Plan, dryRun bool, progress func(Action)) ([]Action, error) {
	if r == nil || plan == nil {
		return nil, errors.New("retention: execute: nil repository or plan")
	}
	if err := checkPlan(ctx, r, instance, plan); err != nil {
		return nil, fmt.Errorf("retention: execute on instance %q: %w", instance, err)
	}
	done := make([]Action, 0, len(plan.Delete))
	for _, a := range plan.Delete {
		if err := ctx.Err(); err != nil {
			return done, fmt.Errorf("retention: execute on instance %q: %w", instance, err)
		}
		if !dryRun {
			if err := r.DeleteManifest(ctx, instance, a.BackupID); err != nil {
				return done, fmt.Errorf("retention: delete backup %s: %w", a.BackupID, err)
			}
			if err := r.DeleteBackupData(ctx, instance, a.BackupID); err != nil {
				return done, fmt.Errorf("retention: delete backup %s (its manifest is already deleted; the partial-upload cleanup will remove its data): %w", a.BackupID, err)
			}
		}
		done = append(done, a)
		if progress != nil {
			progress(a)
		}
	}
	return done, nil
}

// checkPlan verifies that deleting plan.Delete, in order, leaves no listed
// backup whose parent is gone.
func checkPlan(ctx context.Context, r *repo.Repo, instance string, plan *Plan) error {
	pos := make(map[string]int, len(plan.Delete))
	for i, a := range plan.Delete {
		if a.BackupID == "" {
			return fmt.Errorf("plan entry %d has no backup ID", i)
		}
		if _, dup := pos[a.BackupID]; !dup {
			pos[a.BackupID] = i
		}
	}
	if len(pos) == 0 {
		return nil
	}
	current, err := r.ListBackups(ctx, instance)
	if err != nil {
		return err
	}
	for _, m := range current {
		if manifest.IsRoot(m.Type) || m.ParentID == "" {
			continue
		}
		pp, parentDeleted := pos[m.ParentID]
		if !parentDeleted {
			continue
		}
		cp, childDeleted := pos[m.BackupID]
		switch {
		case !childDeleted:
			return fmt.Errorf("%w: backup %s, which is kept, depends on backup %s, which the plan deletes; compute the plan again",
				ErrStalePlan, m.BackupID, m.ParentID)
		case cp > pp:
			return fmt.Errorf("%w: the plan deletes backup %s before backup %s, which depends on it",
				ErrStalePlan, m.ParentID, m.BackupID)
		}
	}
	return nil
}

// GCPartial removes the data of instance's partial uploads: backup
// directories without a manifest, left by interrupted backups or deletions.
// A backup directory with a live lease (repo.AcquireLease: a backup is
// uploading into it) is never touched. Without one (no lease, or an expired
// one: its agent died), a partial upload is removed only when the newest of
// its objects, lease objects included, is older than grace at time now;
// grace must exceed the longest one backup can take (config validates
// partial_grace against the backup timeout × attempts), since a retried
// attempt reuses chunks stored long before without rewriting them. An
// object whose modification time is unknown (zero) makes its backup's age
// unknown, and that backup is left alone. Nothing is ever deleted from a
// backup directory that holds a manifest: it is checked again just before
// deleting.
//
// It returns the IDs of the partial uploads removed (with dryRun, that would
// be removed; nothing is deleted), in ID order. On error, it returns the IDs
// removed so far.
func GCPartial(ctx context.Context, r *repo.Repo, instance string, grace time.Duration, now time.Time, dryRun bool) ([]string, error) {
	if r == nil {
		return nil, errors.New("retention: gc partial: nil repository")
	}
	if grace < 0 {
		return nil, fmt.Errorf("retention: gc partial: grace %v is negative", grace)
	}
	ids, err := r.ListPartial(ctx, instance)
	if err != nil {
		return nil, fmt.Errorf("retention: gc partial: %w", err)
	}
	b := r.Backend()
	removed := make([]string, 0, len(ids))
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("retention: gc partial: %w", err)
		}
		objs, err := b.List(ctx, repo.BackupPrefix(instance, id))
		if err != nil {
			return removed, fmt.Errorf("retention: gc partial %s: %w", id, err)
		}
		if len(objs) == 0 {
			continue // gone since listed
		}
		mkey := repo.ManifestKey(instance, id)
		var newest time.Time
		eligible := true
		for _, o := range objs {
			if o.Key == mkey || o.ModTime.IsZero() {
				eligible = false // completed since listed, or age unknown
				break
			}
			if o.ModTime.After(newest) {
				newest = o.ModTime
			}
		}
		if !eligible || now.Sub(newest) <= grace {
			continue
		}
		leases, err := r.ReadLeases(ctx, instance, id)
		if err != nil {
			return removed, fmt.Errorf("retention: gc partial %s: %w", id, err)
		}
		if _, live := repo.LiveLease(leases, now); live {
			continue // a backup is uploading into it
		}
		if !dryRun {
			// Last check: the upload may have completed meanwhile.
			if _, err := b.Stat(ctx, mkey); err == nil {
				continue
			} else if !errors.Is(err, storage.ErrNotFound) {
				return removed, fmt.Errorf("retention: gc partial %s: %w", id, err)
			}
			if err := r.DeleteBackupData(ctx, instance, id); err != nil {
				return removed, fmt.Errorf("retention: gc partial %s: %w", id, err)
			}
		}
		removed = append(removed, id)
	}
	return removed, nil
}
