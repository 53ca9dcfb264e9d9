package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/manifest"
)

// ArchiveKeyGrace is how old a data key of the binlog archive that no
// segment uses must be before a prune deletes it: an archiver stores its
// run's data key just before its first segment, so a younger one may belong
// to an archiver that is writing that segment.
const ArchiveKeyGrace = 24 * time.Hour

// ArchiveSummary describes a prune of an instance's binlog archive: what it
// deletes (or, in a dry run, would delete) and why it keeps the rest.
type ArchiveSummary struct {
	// Segments and StoredBytes count the archived segments pruned.
	Segments    int   `json:"segments"`
	StoredBytes int64 `json:"stored_bytes"`
	// From and To are the binlog positions the pruned segments span
	// (file:pos), FromTime and ToTime the times of their events.
	From     string    `json:"from,omitempty"`
	To       string    `json:"to,omitempty"`
	FromTime time.Time `json:"from_time,omitzero"`
	ToTime   time.Time `json:"to_time,omitzero"`
	// Gaps counts the gap records deleted with them.
	Gaps int `json:"gaps,omitempty"`
	// KeyRefs are the data keys deleted (those of archive runs whose
	// segments are all pruned, and unused ones older than ArchiveKeyGrace).
	KeyRefs []string `json:"key_refs,omitempty"`
	// DataObjects counts the data objects deleted: those of the pruned
	// segments and any left unreferenced below the first kept segment (by
	// an interrupted prune or archiver).
	DataObjects int `json:"data_objects"`
	// Packs counts the packs (compacted data objects) deleted: those whose
	// segments are all before the first kept segment.
	Packs int `json:"packs,omitempty"`
	// KeepFrom is the first segment kept and KeepFor the backup whose
	// recovery window needs it (zero and empty when nothing anchors).
	KeepFrom uint64 `json:"keep_from,omitempty"`
	KeepFor  string `json:"keep_for,omitempty"`
	// Reason says, for humans, what is kept and why.
	Reason string `json:"reason"`
}

// Empty says whether the prune deletes nothing.
func (s *ArchiveSummary) Empty() bool {
	return s.Segments+s.Gaps+len(s.KeyRefs)+s.DataObjects+s.Packs == 0
}

// ArchivePlan is the outcome of PlanArchive: the objects to delete and
// their summary.
type ArchivePlan struct {
	Prune   binlog.PruneSet
	Summary ArchiveSummary
}

// PlanArchive decides which part of an instance's binlog archive no
// retained backup needs. It does no I/O.
//
// A retained backup needs, to replay from its consistent point (binlog file
// and position of its manifest), every segment of that file from position 4
// to the end of the hole-free run that holds it (binlog.Index.Covering).
// When the archive has not yet reached the point but its last run holds the
// start of that file, the backup will need that run from there on once the
// archive catches up. The oldest segment any retained backup needs is the
// first kept ("keep from"); every segment before it, with its index record,
// its data object and the gap records before it, is pruned, so that no
// recovery window a retained backup opens is shortened. The data keys of
// the pruned segments go too unless a kept segment uses them; so do data
// keys no kept segment uses that are older than ArchiveKeyGrace at now, and
// data objects below the first kept segment that no index record names.
// Packs (compacted data objects) are pruned whole with their roll-ups.
//
// With no retained backup, or none whose consistent point is (or will be)
// in the archive, nothing is pruned: nothing anchors a window.
func PlanArchive(retained []*manifest.Manifest, ix *binlog.Index, data []binlog.DataObject, keys []binlog.KeyRefInfo, now time.Time) (*ArchivePlan, error) {
	if ix == nil {
		return nil, errors.New("retention: plan archive: nil index")
	}
	for i := 1; i < len(ix.Segments); i++ {
		if ix.Segments[i].Seq <= ix.Segments[i-1].Seq {
			return nil, fmt.Errorf("retention: plan archive: index is not in ascending order of segment numbers at segment %d", ix.Segments[i].Seq)
		}
	}
	plan := &ArchivePlan{}
	sum := &plan.Summary
	if len(ix.Segments) == 0 {
		sum.Reason = "the archive holds no segment"
		return plan, nil
	}
	if len(retained) == 0 {
		sum.Reason = "no backup is retained: the archive is kept whole"
		return plan, nil
	}
	runs := ix.Runs()
	var anchor *manifest.Manifest
	var keepFrom uint64
	var anchorPos string
	for _, b := range retained {
		if b == nil || b.BinlogFile == "" {
			continue
		}
		seq, ok := neededFrom(runs, b)
		if ok && (anchor == nil || seq < keepFrom) {
			anchor, keepFrom = b, seq
			anchorPos = fmt.Sprintf("%s:%d", b.BinlogFile, b.BinlogPos)
		}
	}
	if anchor == nil {
		sum.Reason = "no retained backup's consistent point is in the archive: the archive is kept whole"
		return plan, nil
	}
	// An index roll-up is pruned whole: keep from the start of the one
	// that holds keepFrom.
	for _, rr := range ix.Rollups {
		if rr.FirstSeq < keepFrom && keepFrom <= rr.LastSeq {
			keepFrom = rr.FirstSeq
		}
	}
	for _, rr := range ix.Rollups {
		if rr.LastSeq < keepFrom {
			plan.Prune.Rollups = append(plan.Prune.Rollups, rr.Key)
		}
	}
	sum.KeepFrom, sum.KeepFor = keepFrom, anchor.BackupID

	used := map[string]bool{}
	var first *binlog.Segment
	for i := range ix.Segments {
		seg := &ix.Segments[i]
		if seg.Seq >= keepFrom {
			if first == nil {
				first = seg
			}
			if seg.KeyRef != "" {
				used[seg.KeyRef] = true
			}
			continue
		}
		plan.Prune.Segments = append(plan.Prune.Segments, *seg)
	}
	sum.Reason = fmt.Sprintf("kept from segment %d (%s:%d): the recovery window of backup %s (consistent point %s) needs it",
		first.Seq, first.File, first.Start, anchor.BackupID, anchorPos)

	pruned := map[string]bool{}
	for i, seg := range plan.Prune.Segments {
		if i == 0 {
			sum.From, sum.FromTime = fmt.Sprintf("%s:%d", seg.File, seg.Start), seg.FirstTime
		}
		sum.To, sum.ToTime = fmt.Sprintf("%s:%d", seg.File, seg.End), seg.LastTime
		sum.Segments++
		sum.StoredBytes += seg.StoredSize
		if seg.KeyRef != "" {
			pruned[seg.KeyRef] = true
		}
	}
	for _, g := range ix.Gaps {
		if g.BeforeSeq < keepFrom {
			plan.Prune.Gaps = append(plan.Prune.Gaps, g.BeforeSeq)
		}
	}
	sum.Gaps = len(plan.Prune.Gaps)
	for _, k := range keys {
		switch {
		case used[k.Ref]:
		case pruned[k.Ref], !k.Newest.IsZero() && now.Sub(k.Newest) > ArchiveKeyGrace:
			plan.Prune.KeyRefs = append(plan.Prune.KeyRefs, k.Ref)
		}
	}
	sum.KeyRefs = plan.Prune.KeyRefs
	for _, d := range data {
		// Below the first kept segment, no index record remains to name a
		// data object, and no archiver writes there.
		if d.Seq < keepFrom {
			plan.Prune.Data = append(plan.Prune.Data, d.Key)
		}
	}
	sum.DataObjects = len(plan.Prune.Data)
	// A pack holds segments of one roll-up, which is pruned whole: a pack
	// is pruned with it (or, left by an interrupted prune or compaction,
	// when it is wholly before the first kept segment).
	for _, p := range ix.Packs {
		if p.LastSeq < keepFrom {
			plan.Prune.Packs = append(plan.Prune.Packs, p.Key)
		}
	}
	sum.Packs = len(plan.Prune.Packs)
	if sum.Empty() {
		sum.Reason = "nothing to prune: " + sum.Reason
	}
	return plan, nil
}

// neededFrom returns the first segment that backup b's recovery window
// needs: the start of its binlog file in a hole-free run that holds its
// consistent point (the oldest such, when a file name recurs after a gap:
// binlog.Index.Covering takes the first, binlog.Windows any), or, when the
// archive has not reached the point yet, the start of that file in the last
// run. ok is false when b opens no window, now or later (its point is in a
// hole of the archive, or before it).
func neededFrom(runs [][]binlog.Segment, b *manifest.Manifest) (uint64, bool) {
	if b.BinlogPos > uint64(^uint32(0)) {
		return 0, false
	}
	pos := uint32(b.BinlogPos)
	for _, run := range runs {
		for i, s := range run {
			if s.File != b.BinlogFile || s.Start != 4 {
				continue
			}
			for _, t := range run[i:] {
				if t.File == b.BinlogFile && pos >= t.Start && pos <= t.End {
					return s.Seq, true
				}
			}
		}
	}
	last := runs[len(runs)-1]
	end := last[len(last)-1]
	if end.File == b.BinlogFile && end.End < pos {
		// The point is past the end of the archive in this file: the
		// window opens when the archiver catches up.
		for _, s := range last {
			if s.File == b.BinlogFile && s.Start == 4 {
				return s.Seq, true
			}
		}
	}
	return 0, false
}

// PruneArchive prunes the binlog archive of st's instance of what none of
// the retained backups needs (PlanArchive at now) and returns the summary;
// with dryRun it deletes nothing and returns what it would delete. progress,
// if not nil, is called after each deletion.
func PruneArchive(ctx context.Context, st *binlog.Store, retained []*manifest.Manifest, now time.Time, dryRun bool, progress func(done int)) (*ArchiveSummary, error) {
	if st == nil {
		return nil, errors.New("retention: prune archive: nil store")
	}
	ix, err := st.ReadIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("retention: prune binlog archive of %s: %w", st.Instance, err)
	}
	data, err := st.ListData(ctx)
	if err != nil {
		return nil, fmt.Errorf("retention: prune binlog archive: %w", err)
	}
	keys, err := st.ListKeyRefs(ctx)
	if err != nil {
		return nil, fmt.Errorf("retention: prune binlog archive: %w", err)
	}
	plan, err := PlanArchive(retained, ix, data, keys, now)
	if err != nil {
		return nil, err
	}
	if !dryRun {
		if err := st.Prune(ctx, &plan.Prune, progress); err != nil {
			return nil, fmt.Errorf("retention: %w", err)
		}
	}
	return &plan.Summary, nil
}
