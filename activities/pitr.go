package activities

import (
	"context"
	"strings"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
)

// PITRRequest asks which backup a point-in-time restore starts from.
type PITRRequest struct {
	Instance string        `json:"instance"`
	Target   binlog.Target `json:"target"`
	// BackupID forces the base backup; empty picks the newest that works.
	BackupID string `json:"backup_id,omitempty"`
	// AllowFailedDrill lets BackupID be a backup whose last drill failed
	// (or one in such a backup's chain); without it that is refused, and
	// the automatic choice always skips such backups.
	AllowFailedDrill bool `json:"allow_failed_drill,omitempty"`
}

// PITRPlan is the base backup and where replay starts.
type PITRPlan struct {
	BackupID  string `json:"backup_id"`
	StartFile string `json:"start_file"`
	StartPos  uint32 `json:"start_pos"`
	Window    string `json:"window"`
	// Notes name the newer backups skipped because their drill failed.
	Notes []string `json:"notes,omitempty"`
}

// PlanPITR picks the newest backup whose consistent point precedes the
// target and from which the archive reaches the target without a gap. A
// target outside every recovery window is refused with the windows in the
// message. A backup whose chain holds a backup whose last drill failed is
// skipped (and named in Notes); given as BackupID, it is refused unless
// AllowFailedDrill.
func (c *Catalog) PlanPITR(ctx context.Context, req PITRRequest) (*PITRPlan, error) {
	if _, err := c.cfg().Instance(req.Instance); err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	if err := req.Target.Validate(); err != nil {
		return nil, fail(ErrInvalidRequest, "%v", err)
	}
	backups, err := c.Repo.ListBackups(ctx, req.Instance)
	if err != nil {
		return nil, classify(err)
	}
	ix, err := (&binlog.Store{B: c.Repo.Backend(), Instance: req.Instance}).ReadIndex(ctx)
	if err != nil {
		return nil, classify(err)
	}
	failed, err := c.failedDrills(ctx, req.Instance)
	if err != nil {
		return nil, err
	}
	return planPITR(req, backups, ix, failed)
}

// planPITR is PlanPITR on the backups, archive index and failed drills
// already read.
func planPITR(req PITRRequest, backups []*manifest.Manifest, ix *binlog.Index, failed map[string]*drill.Report) (*PITRPlan, error) {
	windows := binlog.Windows(backups, ix)
	// The archive's flavor, as its newest run recorded it, decides what a
	// GTID target is; a backup of another flavor is no base for it.
	archived := flavor.MariaDB
	if l := ix.Last(); l != nil {
		archived = l.FlavorName()
		if err := req.Target.CheckFlavor(archived); err != nil {
			return nil, fail(ErrInvalidRequest, "instance %s: %v", req.Instance, err)
		}
	}
	var notes []string
	for i := len(backups) - 1; i >= 0; i-- {
		b := backups[i]
		if req.BackupID != "" && b.BackupID != req.BackupID {
			continue
		}
		if b.BinlogFile == "" || !binlog.Before(b, req.Target) {
			continue
		}
		if f, err := b.Flavor(); err == nil && f.Name != archived {
			if req.BackupID != "" {
				return nil, fail(ErrInvalidRequest, "instance %s: backup %s is of a %s server and the binlog archive of a %s one; pick a backup of the archived server",
					req.Instance, b.BackupID, f.Name, archived)
			}
			continue
		}
		if _, err := repo.Chain(backups, b.BackupID); err != nil {
			continue
		}
		if r := failedInChain(backups, b.BackupID, failed); r != nil {
			if req.BackupID != "" && !req.AllowFailedDrill {
				return nil, fail(ErrFailedDrill, "instance %s: %s; restore it only with --allow-failed-drill (allow_failed_drill), or pick another backup", req.Instance, describeFailed(b.BackupID, r))
			}
			if req.BackupID == "" {
				notes = append(notes, "skipped: "+describeFailed(b.BackupID, r))
				continue
			}
		}
		w := binlog.Windows([]*manifest.Manifest{b}, ix)
		for _, win := range w {
			if win.Reaches(req.Target) {
				return &PITRPlan{BackupID: b.BackupID, StartFile: b.BinlogFile, StartPos: uint32(b.BinlogPos), Window: win.String(), Notes: notes}, nil
			}
		}
	}
	what := "no backup can"
	if req.BackupID != "" {
		what = "backup " + req.BackupID + " cannot"
	}
	skippedNote := ""
	if len(notes) > 0 {
		skippedNote = " (" + strings.Join(notes, "; ") + ")"
	}
	return nil, fail(ErrOutsideWindow, "instance %s: %s reach %s: it is outside the recovery window or a gap in the binlog archive lies before it; %s%s",
		req.Instance, what, req.Target, binlog.DescribeWindows(windows, ix.Gaps), skippedNote)
}

// ArchiveCoverage is what the binlog archive of an instance makes
// recoverable: the point-in-time recovery windows and the gaps.
type ArchiveCoverage struct {
	Windows []binlog.Window `json:"windows"`
	Gaps    []binlog.Gap    `json:"gaps"`
}

// ArchiveWindows computes an instance's recovery windows and gaps from the
// backups and the binlog archive in the repository.
func (c *Catalog) ArchiveWindows(ctx context.Context, req InstanceRequest) (*ArchiveCoverage, error) {
	backups, err := c.Repo.ListBackups(ctx, req.Instance)
	if err != nil {
		return nil, classify(err)
	}
	ix, err := (&binlog.Store{B: c.Repo.Backend(), Instance: req.Instance, CheckAllData: true}).ReadIndex(ctx)
	if err != nil {
		return nil, classify(err)
	}
	return &ArchiveCoverage{Windows: binlog.Windows(backups, ix), Gaps: ix.Gaps}, nil
}
