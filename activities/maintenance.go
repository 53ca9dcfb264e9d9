package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/retention"
	"github.com/strata-backup/strata/internal/verify"
)

// VerifyRequest asks to verify an instance's backups: BackupID and its chain,
// or every backup when BackupID is empty.
type VerifyRequest struct {
	Instance string `json:"instance"`
	BackupID string `json:"backup_id,omitempty"`
	// Archive also reads back every archived binlog segment behind every
	// recovery window (size and sha256; the worker holds no key, so
	// encrypted segments are not decrypted).
	Archive bool `json:"archive,omitempty"`
	// AllowUnencrypted accepts old unencrypted segments of an instance
	// with encryption enabled.
	AllowUnencrypted bool `json:"allow_unencrypted,omitempty"`
}

// VerifyProgress is heartbeated while backups are verified.
type VerifyProgress struct {
	BackupID string `json:"backup_id"`
	Done     int    `json:"done"`
	Total    int    `json:"total"`
}

// VerifyBackups reads every chunk of the backups and checks sizes, sha256s,
// parents and LSN continuity. Problems are reported, not raised: the activity
// fails only when the repository cannot be read.
func (c *Catalog) VerifyBackups(ctx context.Context, req VerifyRequest) (*verify.Report, error) {
	in, err := c.cfg().Instance(req.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	var ids []string
	if req.BackupID != "" {
		ids = []string{req.BackupID}
	}
	hb := startHeartbeat(ctx, 10*time.Second, VerifyProgress{})
	defer hb.close()
	rep, err := verify.Backups(ctx, c.Repo, req.Instance, ids, in.Backup.Parallelism, func(id string, done, total int) {
		hb.update(ctx, VerifyProgress{BackupID: id, Done: done, Total: total})
	}, verify.RequireEncrypted(in.EncryptionEnabled(), req.AllowUnencrypted))
	if err != nil {
		return nil, classify(err)
	}
	if req.Archive {
		if err := verify.Archive(ctx, c.Repo, req.Instance, verify.ArchiveOptions{Encrypted: in.EncryptionEnabled(), AllowUnencrypted: req.AllowUnencrypted}, rep); err != nil {
			return nil, classify(err)
		}
	}
	return rep, nil
}

// RetentionRequest asks to apply an instance's retention policy.
type RetentionRequest struct {
	Instance string `json:"instance"`
	DryRun   bool   `json:"dry_run,omitempty"`
	// AllowDeleteNewest lets the policy delete the newest restorable chain,
	// which retention otherwise always keeps.
	AllowDeleteNewest bool `json:"allow_delete_newest,omitempty"`
}

// RetentionPlan is the computed plan with the policy it came from.
type RetentionPlan struct {
	Policy string         `json:"policy"`
	Plan   retention.Plan `json:"plan"`
	Grace  time.Duration  `json:"partial_grace"`
	At     time.Time      `json:"at"`
	// HeartbeatTimeout is the heartbeat timeout of ApplyRetention (the
	// config's temporal.heartbeat_timeout), so that a prune whose worker
	// died is retried that soon; 0 for plans made before it was recorded.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// RetentionResult says what was (or, in a dry run, would be) deleted.
type RetentionResult struct {
	DryRun         bool               `json:"dry_run"`
	Deleted        []retention.Action `json:"deleted"`
	PartialRemoved []string           `json:"partial_removed"`
	// Archive is what was (or would be) pruned of the binlog archive.
	Archive *retention.ArchiveSummary `json:"archive,omitempty"`
}

// ApplyRequest carries a plan to apply.
type ApplyRequest struct {
	Instance string        `json:"instance"`
	Plan     RetentionPlan `json:"plan"`
	DryRun   bool          `json:"dry_run,omitempty"`
}

// PlanRetention computes which backups the instance's policy keeps and
// which it deletes, never a backup that a kept one depends on.
func (c *Catalog) PlanRetention(ctx context.Context, req RetentionRequest) (*RetentionPlan, error) {
	in, err := c.cfg().Instance(req.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	pol := retention.Policy{KeepFull: in.Retention.KeepFull, KeepDays: in.Retention.KeepDays, KeepMin: in.Retention.KeepMin,
		AllowDeleteNewest: req.AllowDeleteNewest}
	if err := pol.Validate(); err != nil {
		return nil, fail(ErrConfig, "instance %s retention: %v", in.ID, err)
	}
	all, err := c.Repo.ListBackups(ctx, req.Instance)
	if err != nil {
		return nil, classify(err) // an invalid manifest is CorruptBackup
	}
	now := time.Now().UTC()
	plan, err := retention.Compute(all, pol, now)
	if err != nil {
		return nil, fail(ErrBrokenChain, "instance %s: %v", in.ID, err)
	}
	return &RetentionPlan{Policy: pol.String(), Plan: *plan, Grace: in.Retention.PartialGrace.Std(), At: now,
		HeartbeatTimeout: c.Config.Temporal.HeartbeatTimeout.Std()}, nil
}

// ApplyRetention deletes the plan's backups (manifest first, then chunks,
// children before parents), removes abandoned partial uploads older than
// the grace period, and prunes the binlog archive of what no retained
// backup's recovery window needs. A plan made stale by a newer backup is
// refused.
func (c *Catalog) ApplyRetention(ctx context.Context, req ApplyRequest) (*RetentionResult, error) {
	res := &RetentionResult{DryRun: req.DryRun}
	// Heartbeat all along: deleting one large backup, or many archive
	// segments, takes longer than a heartbeat timeout.
	every := 10 * time.Second
	if t := c.Config.Temporal.HeartbeatTimeout.Std(); t > 0 {
		every = min(every, t/3)
	}
	hb := startHeartbeat(ctx, every, "")
	defer hb.close()
	done, err := retention.Execute(ctx, c.Repo, req.Instance, &req.Plan.Plan, req.DryRun, func(a retention.Action) {
		hb.update(ctx, a.BackupID)
	})
	res.Deleted = done
	if err != nil {
		if errors.Is(err, retention.ErrStalePlan) {
			return nil, fail(ErrStalePlan, "%v", err) // the workflow plans again
		}
		return nil, classify(err)
	}
	res.PartialRemoved, err = retention.GCPartial(ctx, c.Repo, req.Instance, req.Plan.Grace, time.Now(), req.DryRun)
	if err != nil {
		return nil, classify(err)
	}
	if res.Archive, err = c.pruneArchive(ctx, req, hb); err != nil {
		return nil, classify(err)
	}
	return res, nil
}

// pruneArchive prunes the instance's binlog archive for the backups that
// remain once the plan is applied (in a dry run, those the plan keeps and
// any newer).
func (c *Catalog) pruneArchive(ctx context.Context, req ApplyRequest, hb *heartbeater) (*retention.ArchiveSummary, error) {
	all, err := c.Repo.ListBackups(ctx, req.Instance)
	if err != nil {
		return nil, err
	}
	deleted := map[string]bool{}
	for _, a := range req.Plan.Plan.Delete {
		deleted[a.BackupID] = true
	}
	retained := make([]*manifest.Manifest, 0, len(all))
	for _, m := range all {
		if !deleted[m.BackupID] {
			retained = append(retained, m)
		}
	}
	st := &binlog.Store{B: c.Repo.Backend(), Instance: req.Instance}
	return retention.PruneArchive(ctx, st, retained, time.Now(), req.DryRun, func(n int) {
		hb.update(ctx, fmt.Sprintf("binlog archive: %d objects deleted", n))
	})
}
