package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"

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
	in, err := c.Config.Instance(req.Instance)
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
	})
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
}

// RetentionPlan is the computed plan with the policy it came from.
type RetentionPlan struct {
	Policy string         `json:"policy"`
	Plan   retention.Plan `json:"plan"`
	Grace  time.Duration  `json:"partial_grace"`
	At     time.Time      `json:"at"`
}

// RetentionResult says what was (or, in a dry run, would be) deleted.
type RetentionResult struct {
	DryRun         bool               `json:"dry_run"`
	Deleted        []retention.Action `json:"deleted"`
	PartialRemoved []string           `json:"partial_removed"`
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
	in, err := c.Config.Instance(req.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	pol := retention.Policy{KeepFull: in.Retention.KeepFull, KeepDays: in.Retention.KeepDays, KeepMin: in.Retention.KeepMin}
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
	return &RetentionPlan{Policy: pol.String(), Plan: *plan, Grace: in.Retention.PartialGrace.Std(), At: now}, nil
}

// ApplyRetention deletes the plan's backups (manifest first, then chunks,
// children before parents) and removes abandoned partial uploads older than
// the grace period. A plan made stale by a newer backup is refused.
func (c *Catalog) ApplyRetention(ctx context.Context, req ApplyRequest) (*RetentionResult, error) {
	res := &RetentionResult{DryRun: req.DryRun}
	done, err := retention.Execute(ctx, c.Repo, req.Instance, &req.Plan.Plan, req.DryRun, func(a retention.Action) {
		activity.RecordHeartbeat(ctx, a.BackupID)
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
	return res, nil
}
