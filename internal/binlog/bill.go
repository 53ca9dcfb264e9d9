package binlog

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/counting"
)

// The kinds of object of an archive, as a Bill counts them.
const (
	BillRecords = "records" // index/<seq>.json: individual index records
	BillRollups = "rollups" // rollup/<first>-<last>.json: index roll-ups
	BillData    = "data"    // data/<seq>[-<run>].zst: segment data
	BillPacks   = "packs"   // pack/...: compacted segment data
	BillGaps    = "gaps"    // gaps/<seq>.json
	BillKeys    = "keys"    // keys/...: the wrapped data keys of encrypted runs
	BillOther   = "other"   // anything else under <instance>/binlogs/
)

// BillKinds lists the kinds in the order they are shown.
var BillKinds = []string{BillRecords, BillRollups, BillData, BillPacks, BillGaps, BillKeys, BillOther}

// Bill is what an archive costs in storage: the objects and bytes it
// stores, by kind, and the object writes (GCS class A operations) that
// made it, per hour. It is computed from the index and one listing of the
// archive (NewBill), without reading any object.
//
// The writes are derived, not measured: every segment of the index cost
// two (its data object and its index record) at its ArchivedAt, whether or
// not those objects are still there (a roll-up deletes the records, a
// compaction the data objects); every other object listed (roll-up, pack,
// gap, key, a data object or record no segment of the index names, other)
// cost one at its ModTime. Objects deleted since (by retention) are not
// known. Deletes are free on GCS and not counted; the listings and reads
// of the archiver are counted by the archiver itself (Status).
type Bill struct {
	// Objects and Bytes stored, by kind (BillKinds: every kind is present).
	Objects      map[string]int   `json:"objects"`
	Bytes        map[string]int64 `json:"bytes"`
	TotalObjects int              `json:"total_objects"`
	TotalBytes   int64            `json:"total_bytes"`
	// At is the time the bill is computed for.
	At time.Time `json:"at"`
	// Oldest is the time of the archive's oldest write known (zero: none).
	Oldest time.Time `json:"oldest,omitempty"`
	// Writes is the number of object writes known, since Oldest.
	Writes int `json:"writes"`
	// WritesLastHour is the writes in the hour before At.
	WritesLastHour int `json:"writes_last_hour"`
	// WritesPerHour is the writes since AvgSince per hour: over the 24
	// hours before At, or since Oldest if the archive is younger, and over
	// one hour at least (an archive younger than an hour shows its writes
	// so far, not a rate extrapolated from a few seconds).
	WritesPerHour float64   `json:"writes_per_hour"`
	AvgSince      time.Time `json:"avg_since,omitempty"`
	AvgHours      float64   `json:"avg_hours"`
	// ListPages is what the listing behind the bill cost: a request per
	// counting.ListPageSize (1,000) keys, at least one.
	ListPages int `json:"list_pages"`
}

// Bill lists the whole archive of the Store's instance once and computes
// its bill at now (NewBill). ix is from ReadIndex. The listing costs a
// request per 1,000 objects; no object is read.
func (s *Store) Bill(ctx context.Context, ix *Index, now time.Time) (*Bill, error) {
	objs, err := s.B.List(ctx, s.prefix())
	if err != nil {
		return nil, fmt.Errorf("list the binlog archive of %s: %w", s.Instance, err)
	}
	b := NewBill(s.Instance, ix, objs, now)
	b.ListPages = max(1, (len(objs)+counting.ListPageSize-1)/counting.ListPageSize)
	return b, nil
}

// NewBill computes the bill of instance's archive at now from its index
// (ReadIndex) and the listing of its objects (of <instance>/binlogs/, in
// one listing or one per folder; objects outside it are ignored).
func NewBill(instance string, ix *Index, objs []storage.ObjectInfo, now time.Time) *Bill {
	s := &Store{Instance: instance}
	b := &Bill{Objects: map[string]int{}, Bytes: map[string]int64{}, At: now}
	for _, k := range BillKinds {
		b.Objects[k], b.Bytes[k] = 0, 0
	}
	hourFrom, dayFrom := now.Add(-time.Hour), now.Add(-24*time.Hour)
	day := 0 // writes in the 24 hours before now
	write := func(t time.Time, n int) {
		b.Writes += n
		if t.IsZero() {
			return // not known when
		}
		if t.After(hourFrom) {
			b.WritesLastHour += n
		}
		if t.After(dayFrom) {
			day += n
		}
		if b.Oldest.IsZero() || t.Before(b.Oldest) {
			b.Oldest = t
		}
	}
	seqs := make(map[uint64]bool, len(ix.Segments))
	dataKeys := make(map[string]bool, len(ix.Segments))
	for i := range ix.Segments {
		seg := &ix.Segments[i]
		seqs[seg.Seq] = true
		dataKeys[s.segmentDataKey(seg)] = true
		write(seg.ArchivedAt, 2) // data object and index record
	}
	for _, o := range objs {
		name, ok := strings.CutPrefix(o.Key, s.prefix())
		if !ok {
			continue
		}
		kind := billKind(s, o.Key, name)
		b.Objects[kind]++
		b.Bytes[kind] += o.Size
		b.TotalObjects++
		b.TotalBytes += o.Size
		switch kind {
		case BillRecords:
			if seq, _ := s.indexSeq(o.Key); seqs[seq] {
				continue // counted with its segment
			}
		case BillData:
			if dataKeys[o.Key] {
				continue
			}
		}
		write(o.ModTime, 1)
	}
	if !b.Oldest.IsZero() {
		b.AvgSince = dayFrom
		if b.Oldest.After(dayFrom) {
			b.AvgSince = b.Oldest
		}
		span := max(now.Sub(b.AvgSince), time.Hour)
		b.AvgHours = span.Hours()
		b.WritesPerHour = float64(day) / b.AvgHours
	}
	return b
}

// billKind names the kind of the object key (name: key relative to the
// archive).
func billKind(s *Store, key, name string) string {
	folder, rest, _ := strings.Cut(name, "/")
	switch {
	case folder == "index":
		if _, ok := s.indexSeq(key); ok {
			return BillRecords
		}
	case folder == "rollup":
		if _, err := s.parseRollupKey(key); err == nil {
			return BillRollups
		}
	case folder == "data":
		if isDataName(rest) {
			return BillData
		}
	case folder == "pack" && rest != "":
		return BillPacks // named by compaction: counted whatever the name
	case folder == "gaps":
		num, ok := strings.CutSuffix(rest, ".json")
		if _, err := strconv.ParseUint(num, 10, 64); ok && err == nil && len(num) == 12 {
			return BillGaps
		}
	case strings.HasPrefix(key, repo.BinlogKeysPrefix(s.Instance)) && rest != "":
		return BillKeys
	}
	return BillOther
}

// isDataName says whether name is a segment data object's:
// <12-digit seq>.zst or <12-digit seq>-<run id>.zst.
func isDataName(name string) bool {
	base, ok := strings.CutSuffix(name, ".zst")
	num, run, hasRun := strings.Cut(base, "-")
	if _, err := strconv.ParseUint(num, 10, 64); !ok || err != nil || len(num) != 12 {
		return false
	}
	return !hasRun || (run != "" && !strings.Contains(run, "/"))
}
