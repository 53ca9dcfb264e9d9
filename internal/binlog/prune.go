package binlog

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/repo"
)

// DataObject is one stored data object of the archive, named after its
// segment number.
type DataObject struct {
	Key     string
	Seq     uint64
	Size    int64
	ModTime time.Time
}

// ListData lists the archive's data objects, in key order. Objects whose
// name carries no segment number are not the archive's and are left out.
func (s *Store) ListData(ctx context.Context) ([]DataObject, error) {
	objs, err := s.B.List(ctx, s.prefix()+"data/")
	if err != nil {
		return nil, fmt.Errorf("list binlog data of %s: %w", s.Instance, err)
	}
	out := make([]DataObject, 0, len(objs))
	for _, o := range objs {
		seq, ok := dataSeq(o.Key)
		if !ok {
			continue
		}
		out = append(out, DataObject{Key: o.Key, Seq: seq, Size: o.Size, ModTime: o.ModTime})
	}
	return out, nil
}

// dataSeq parses the segment number of a data object key
// (".../data/<seq>.zst" or ".../data/<seq>-<run>.zst").
func dataSeq(key string) (uint64, bool) {
	name, ok := strings.CutSuffix(path.Base(key), ".zst")
	if !ok {
		return 0, false
	}
	seqPart, _, _ := strings.Cut(name, "-")
	n, err := strconv.ParseUint(seqPart, 10, 64)
	return n, err == nil
}

// KeyRefInfo is one data key of the archive (one archive run's), with the
// time of its newest wrapping.
type KeyRefInfo struct {
	Ref    string
	Newest time.Time
}

// ListKeyRefs lists the archive's data keys, sorted by ref.
func (s *Store) ListKeyRefs(ctx context.Context) ([]KeyRefInfo, error) {
	prefix := repo.BinlogKeysPrefix(s.Instance)
	objs, err := s.B.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list binlog keys of %s: %w", s.Instance, err)
	}
	var out []KeyRefInfo
	for _, o := range objs {
		ref, _, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if !ok || ref == "" {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Ref == ref {
			if o.ModTime.After(out[n-1].Newest) {
				out[n-1].Newest = o.ModTime
			}
			continue
		}
		out = append(out, KeyRefInfo{Ref: ref, Newest: o.ModTime})
	}
	return out, nil
}

// PruneSet is what a prune of the archive deletes: the index records of
// the oldest segments, the gap records before what remains, the data keys
// no remaining segment uses, and the data objects of the pruned segments
// (and any other left unreferenced below the first remaining segment).
type PruneSet struct {
	// Segments are the index records to delete, ascending by Seq.
	Segments []Segment `json:"segments"`
	// Gaps are the BeforeSeq of the gap records to delete.
	Gaps []uint64 `json:"gaps,omitempty"`
	// KeyRefs are the data keys to delete with all their wrappings.
	KeyRefs []string `json:"key_refs,omitempty"`
	// Data are the keys of the data objects to delete.
	Data []string `json:"data,omitempty"`
	// Rollups are the keys of the index roll-ups to delete: each holds
	// only segments of Segments.
	Rollups []string `json:"rollups,omitempty"`
	// Packs are the keys of the packs to delete: each holds only segments
	// of Segments (or of segments pruned before).
	Packs []string `json:"packs,omitempty"`
}

// Empty says whether the set deletes nothing.
func (p *PruneSet) Empty() bool {
	return len(p.Segments)+len(p.Gaps)+len(p.KeyRefs)+len(p.Data)+len(p.Rollups)+len(p.Packs) == 0
}

// Prune deletes p in an order that is safe at every point of a crash:
// first the index records and roll-ups (ascending, a roll-up after the
// records left inside it, so that what remains is always a suffix of the
// archive and no record ever points to a missing data object or key), then the gap records before the first remaining segment, then
// the data keys, then the data objects and packs. A crash leaves at most
// unreferenced keys and data objects, which the next prune removes.
// progress, if not nil, is called after each deletion with the number done.
func (s *Store) Prune(ctx context.Context, p *PruneSet, progress func(done int)) error {
	if p == nil || p.Empty() {
		return nil
	}
	if !slices.IsSortedFunc(p.Segments, func(a, b Segment) int { return cmpSeq(a.Seq, b.Seq) }) {
		return errors.New("prune binlog archive: segments are not in ascending order")
	}
	dataPrefix := s.prefix() + "data/"
	for _, k := range p.Data {
		if _, ok := dataSeq(k); !ok || !strings.HasPrefix(k, dataPrefix) || strings.Contains(strings.TrimPrefix(k, dataPrefix), "/") {
			return fmt.Errorf("prune binlog archive of %s: %q is not one of its data objects", s.Instance, k)
		}
	}
	for _, k := range p.Packs {
		if _, ok := s.parsePackKey(k); !ok {
			return fmt.Errorf("prune binlog archive of %s: %q is not one of its packs", s.Instance, k)
		}
	}
	for _, ref := range p.KeyRefs {
		if ref == "" || ref == "." || ref == ".." || strings.ContainsAny(ref, "/\\\x00") {
			return fmt.Errorf("prune binlog archive of %s: key ref %q is invalid", s.Instance, ref)
		}
	}
	var rollups []RollupRange
	for _, k := range p.Rollups {
		rr, err := s.parseRollupKey(k)
		if err != nil {
			return fmt.Errorf("prune binlog archive of %s: %w", s.Instance, err)
		}
		rollups = append(rollups, rr)
	}
	slices.SortFunc(rollups, func(a, b RollupRange) int { return cmpSeq(a.FirstSeq, b.FirstSeq) })
	// A segment inside a pruned roll-up has an individual record only if a
	// roll-up stopped before deleting it: delete those that are listed.
	var records map[string]bool
	if len(rollups) > 0 {
		objs, err := s.B.List(ctx, s.prefix()+"index/")
		if err != nil {
			return fmt.Errorf("prune binlog archive of %s: list index: %w", s.Instance, err)
		}
		records = make(map[string]bool, len(objs))
		for _, o := range objs {
			records[o.Key] = true
		}
	}
	done := 0
	step := func() {
		done++
		if progress != nil {
			progress(done)
		}
	}
	deleteRollupsBefore := func(seq uint64) error {
		for len(rollups) > 0 && rollups[0].LastSeq < seq {
			if err := s.B.Delete(ctx, rollups[0].Key); err != nil {
				return fmt.Errorf("prune binlog archive of %s: delete index roll-up %s: %w", s.Instance, rollups[0].Key, err)
			}
			rollups = rollups[1:]
		}
		return nil
	}
	for _, seg := range p.Segments {
		if err := deleteRollupsBefore(seg.Seq); err != nil {
			return err
		}
		if key := s.indexKey(seg.Seq); !covered(rollups, seg.Seq) || records[key] {
			if err := s.B.Delete(ctx, key); err != nil {
				return fmt.Errorf("prune binlog archive of %s: delete index record of segment %d: %w", s.Instance, seg.Seq, err)
			}
		}
		step()
	}
	if err := deleteRollupsBefore(^uint64(0)); err != nil {
		return err
	}
	for _, g := range p.Gaps {
		if err := s.B.Delete(ctx, s.gapKey(g)); err != nil {
			return fmt.Errorf("prune binlog archive of %s: delete gap record %d: %w", s.Instance, g, err)
		}
		step()
	}
	for _, ref := range p.KeyRefs {
		objs, err := s.B.List(ctx, repo.BinlogKeysPrefix(s.Instance)+ref+"/")
		if err != nil {
			return fmt.Errorf("prune binlog archive of %s: list data key %s: %w", s.Instance, ref, err)
		}
		for _, o := range objs {
			if err := s.B.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("prune binlog archive of %s: delete %s: %w", s.Instance, o.Key, err)
			}
		}
		step()
	}
	for _, k := range append(slices.Clone(p.Data), p.Packs...) {
		if err := s.B.Delete(ctx, k); err != nil {
			return fmt.Errorf("prune binlog archive of %s: delete %s: %w", s.Instance, k, err)
		}
		step()
	}
	return nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
