package binlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/strata-backup/strata/internal/storage"
)

// Segment compaction. Once a binlog file is closed and its index is
// rolled up, the data objects of its segments (one per segment, up to one
// a second) are rewritten into packs: <instance>/binlogs/pack/<first
// seq>-<last seq>.zst, the stored bytes of the consecutive segments
// first..last of one roll-up, concatenated as they are (each still
// compressed, and encrypted with its own run's key). A segment's bytes are
// at the offset the stored sizes of the segments before it in the pack add
// up to, and are checked against the sha256 of its (authenticated) record
// as a data object's are: a pack carries no index of its own, so a pack
// planted or altered by a writer of the bucket can make a read fail but
// never give other bytes. A pack is written, read back and compared
// before the data objects it replaces are deleted. See
// docs/architecture.md, "Segment compaction".

// PackTargetSize is the size a pack is kept under: segments are added to a
// pack while its stored bytes stay at most this (a pack holds one segment
// at least, whatever its size).
const PackTargetSize = 16 << 20

func (s *Store) packSize() int64 {
	if s.PackSize > 0 {
		return s.PackSize
	}
	return PackTargetSize
}

// compactFetchers is how many data objects compaction reads at once.
const compactFetchers = 8

// packCacheEntries is how many packs a Store keeps in memory for reads
// (ReadSegment reads a pack whole, once for all its segments).
const packCacheEntries = 8

// PackRange is a pack's place in the archive, from its key and listing.
type PackRange struct {
	Key      string
	FirstSeq uint64
	LastSeq  uint64
	Size     int64
}

// packLoc is where a segment's stored bytes are in a pack.
type packLoc struct {
	key  string
	off  int64
	size int64 // the whole pack's
}

func (s *Store) packKey(first, last uint64) string {
	return fmt.Sprintf("%spack/%012d-%012d.zst", s.prefix(), first, last)
}

// parsePackKey returns the range a pack's key names; ok is false for an
// object of another name (it is no pack and is left alone).
func (s *Store) parsePackKey(key string) (PackRange, bool) {
	name, ok := strings.CutPrefix(key, s.prefix()+"pack/")
	num, ok2 := strings.CutSuffix(name, ".zst")
	a, b, ok3 := strings.Cut(num, "-")
	if !ok || !ok2 || !ok3 || len(a) != 12 || len(b) != 12 {
		return PackRange{}, false
	}
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || first == 0 || last < first || last-first >= RollupMaxSegments {
		return PackRange{}, false
	}
	return PackRange{Key: key, FirstSeq: first, LastSeq: last}, true
}

// listPacks lists the packs, ascending by first segment (then key).
func (s *Store) listPacks(ctx context.Context) ([]PackRange, error) {
	objs, err := s.B.List(ctx, s.prefix()+"pack/")
	if err != nil {
		return nil, fmt.Errorf("list binlog packs: %w", err)
	}
	out := make([]PackRange, 0, len(objs))
	for _, o := range objs {
		if pr, ok := s.parsePackKey(o.Key); ok {
			pr.Size = o.Size
			out = append(out, pr)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].FirstSeq < out[j].FirstSeq })
	return out, nil
}

// attachPacks records, in the segments of segs (ascending by Seq), where
// their bytes are in the packs: a pack is used when its segments are all
// in segs, read from one roll-up, consecutive, and their stored sizes add
// up to its size; it is attached to those of its segments no earlier pack
// holds (two compactions that overlapped may have packed a stretch twice,
// in different cuts). Other packs are not used (a read of one of their
// segments goes to its data object): only a rolled-up file is compacted.
func (s *Store) attachPacks(segs []Segment, packs []PackRange) {
	rollup := s.prefix() + "rollup/"
	for _, pr := range packs {
		i := sort.Search(len(segs), func(i int) bool { return segs[i].Seq >= pr.FirstSeq })
		n := int(pr.LastSeq - pr.FirstSeq + 1)
		if i+n > len(segs) || segs[i].Seq != pr.FirstSeq || segs[i+n-1].Seq != pr.LastSeq {
			continue
		}
		var sum int64
		ok := true
		for j := i; j < i+n && ok; j++ {
			ok = strings.HasPrefix(segs[j].record, rollup) && segs[j].record == segs[i].record &&
				(j == i || segs[j].Seq == segs[j-1].Seq+1)
			sum += segs[j].StoredSize
		}
		if !ok || sum != pr.Size {
			continue
		}
		var off int64
		for j := i; j < i+n; j++ {
			if segs[j].pack == nil {
				segs[j].pack = &packLoc{key: pr.Key, off: off, size: pr.Size}
			}
			off += segs[j].StoredSize
		}
	}
}

// packCache keeps the packs last read, whole, so that the segments of one
// pack cost one request; concurrent reads of one pack share the request.
type packCache struct {
	mu      sync.Mutex
	entries []*packEntry // least recently used first
}

type packEntry struct {
	key  string
	done chan struct{}
	data []byte
	err  error
}

// packBytes returns the whole pack loc names, from the cache or storage.
// A pack is at most its segments' stored sizes (loc.size): a larger or
// shorter object is corrupt.
func (s *Store) packBytes(ctx context.Context, loc *packLoc) ([]byte, error) {
	for {
		b, err := s.packBytesOnce(ctx, loc)
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue // the reader that fetched it was cancelled, not this one
		}
		return b, err
	}
}

func (s *Store) packBytesOnce(ctx context.Context, loc *packLoc) ([]byte, error) {
	c := &s.packs
	c.mu.Lock()
	for i, e := range c.entries {
		if e.key == loc.key {
			c.entries = append(append(c.entries[:i:i], c.entries[i+1:]...), e)
			c.mu.Unlock()
			select {
			case <-e.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return e.data, e.err
		}
	}
	e := &packEntry{key: loc.key, done: make(chan struct{})}
	c.entries = append(c.entries, e)
	if len(c.entries) > packCacheEntries {
		c.entries = c.entries[1:]
	}
	c.mu.Unlock()
	e.data, e.err = s.getLimited(ctx, loc.key, loc.size)
	if e.err == nil && int64(len(e.data)) != loc.size {
		e.err = fmt.Errorf("%w: pack %s holds %d bytes, its segments %d", ErrCorrupt, loc.key, len(e.data), loc.size)
	}
	close(e.done)
	if e.err != nil {
		c.mu.Lock()
		for i, x := range c.entries {
			if x == e {
				c.entries = append(c.entries[:i:i], c.entries[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
	}
	return e.data, e.err
}

// fromPack returns a segment's stored bytes from its pack, checked
// against its record's size and sha256.
func (s *Store) fromPack(ctx context.Context, loc *packLoc, seg *Segment) ([]byte, error) {
	data, err := s.packBytes(ctx, loc)
	if err != nil {
		return nil, err
	}
	if loc.off < 0 || loc.off+seg.StoredSize > int64(len(data)) {
		return nil, fmt.Errorf("%w: segment %d is past the end of pack %s", ErrCorrupt, seg.Seq, loc.key)
	}
	b := data[loc.off : loc.off+seg.StoredSize]
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != seg.SHA256 {
		return nil, fmt.Errorf("%w: segment %d (%s:%d-%d): its bytes in pack %s (offset %d) do not match the sha256 of its record", ErrCorrupt, seg.Seq, seg.File, seg.Start, seg.End, loc.key, loc.off)
	}
	return b, nil
}

// findPack looks for a pack that holds seg, for a segment whose data
// object is gone but whose record was read without its pack (an index read
// before the compaction): it lists the packs and reads the roll-up that
// holds seg, and remembers where every segment of that pack is. A pack key
// in skip is not used. It returns nil when no usable pack holds seg.
func (s *Store) findPack(ctx context.Context, seg *Segment, skip string) (*packLoc, error) {
	s.mu.Lock()
	loc := s.located[seg.Seq]
	s.mu.Unlock()
	if loc != nil && loc.key != skip {
		return loc, nil
	}
	packs, err := s.listPacks(ctx)
	if err != nil {
		return nil, err
	}
	var holding []PackRange
	for _, pr := range packs {
		if pr.FirstSeq <= seg.Seq && seg.Seq <= pr.LastSeq && pr.Key != skip {
			holding = append(holding, pr)
		}
	}
	if len(holding) == 0 {
		return nil, nil
	}
	rollups, err := s.listRollups(ctx)
	if err != nil {
		return nil, err
	}
	for _, rr := range rollups {
		if rr.FirstSeq > seg.Seq || seg.Seq > rr.LastSeq {
			continue
		}
		r, err := s.readRollup(ctx, rr)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		segs := r.Segments
		for j := range segs {
			segs[j].record = rr.Key
		}
		s.attachPacks(segs, holding)
		i := int(seg.Seq - r.FirstSeq)
		if segs[i].pack == nil {
			continue
		}
		s.mu.Lock()
		if s.located == nil {
			s.located = map[uint64]*packLoc{}
		}
		for j := range segs {
			if segs[j].pack != nil && segs[j].pack.key == segs[i].pack.key {
				s.located[segs[j].Seq] = segs[j].pack
			}
		}
		s.mu.Unlock()
		return segs[i].pack, nil
	}
	return nil, nil
}

// Compact rewrites the data objects of rolled-up binlog files into packs
// and deletes the data objects a pack already holds (left by a compaction
// that stopped before deleting them). ix is from ReadIndex or ReadTail:
// the roll-ups that need work are found from one listing of packs (in ix)
// and one of data/, and those not read into ix are read. Newest roll-ups
// first. Each pack is read back from storage and compared with the bytes
// it was made of before a data object is deleted; a segment whose data
// object does not match its record is not packed (ErrCorrupt, after the
// others are done). It is idempotent and safe to run beside another
// compaction, a reader or a prune: a data object gone or a pack there
// that it did not expect makes it list both again before it reports a
// problem. It returns the number of packs written; ix's packs are listed
// again after any.
func (s *Store) Compact(ctx context.Context, ix *Index) (int, error) {
	if len(ix.Rollups) == 0 {
		return 0, nil
	}
	data, err := s.B.List(ctx, s.prefix()+"data/")
	if err != nil {
		return 0, fmt.Errorf("list binlog data: %w", err)
	}
	dataSeqs := make([]uint64, 0, len(data))
	present := make(map[string]bool, len(data))
	for _, o := range data {
		if seq, ok := dataSeq(o.Key); ok {
			dataSeqs = append(dataSeqs, seq)
			present[o.Key] = true
		}
	}
	sort.Slice(dataSeqs, func(i, j int) bool { return dataSeqs[i] < dataSeqs[j] })
	written := 0
	var problems []string
	for i := len(ix.Rollups) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		rr := ix.Rollups[i]
		j := sort.Search(len(dataSeqs), func(k int) bool { return dataSeqs[k] >= rr.FirstSeq })
		hasData := j < len(dataSeqs) && dataSeqs[j] <= rr.LastSeq
		if !hasData {
			continue // packed (or its data is gone: nothing to pack)
		}
		var probs []string
		for attempt := 0; attempt < 2; attempt++ {
			if attempt > 0 {
				// Another compaction (or a prune) may have been at it:
				// list its packs and data again before saying so.
				if ix.Packs, err = s.listPacks(ctx); err != nil {
					return written, err
				}
				if err := s.relistData(ctx, rr, present); err != nil {
					return written, err
				}
			}
			segs, err := s.rollupSegments(ctx, ix, rr)
			if errors.Is(err, storage.ErrNotFound) {
				probs = nil
				break // pruned meanwhile
			}
			if err != nil {
				return written, err
			}
			var n int
			n, probs, err = s.compactRollup(ctx, segs, present)
			written += n
			if err != nil {
				return written, err
			}
			if len(probs) == 0 {
				break
			}
		}
		problems = append(problems, probs...)
	}
	if written > 0 {
		if ix.Packs, err = s.listPacks(ctx); err != nil {
			return written, err
		}
		for i := range ix.Segments {
			ix.Segments[i].pack = nil
		}
		s.attachPacks(ix.Segments, ix.Packs)
	}
	if len(problems) > 0 {
		return written, fmt.Errorf("%w: compaction of the binlog archive of %s left segments unpacked: %s", ErrCorrupt, s.Instance, strings.Join(problems, "; "))
	}
	return written, nil
}

// relistData lists the data objects of roll-up rr's range again into
// present.
func (s *Store) relistData(ctx context.Context, rr RollupRange, present map[string]bool) error {
	prefix := s.prefix() + "data/" + commonPrefix(fmt.Sprintf("%012d", rr.FirstSeq), fmt.Sprintf("%012d", rr.LastSeq))
	objs, err := s.B.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("list binlog data: %w", err)
	}
	for k := range present {
		if seq, ok := dataSeq(k); ok && strings.HasPrefix(k, prefix) && seq >= rr.FirstSeq && seq <= rr.LastSeq {
			delete(present, k)
		}
	}
	for _, o := range objs {
		present[o.Key] = true
	}
	return nil
}

// rollupSegments returns a copy of the segments of roll-up rr with their
// packs attached: from ix when it holds them all, else read.
func (s *Store) rollupSegments(ctx context.Context, ix *Index, rr RollupRange) ([]Segment, error) {
	n := int(rr.LastSeq - rr.FirstSeq + 1)
	k := sort.Search(len(ix.Segments), func(k int) bool { return ix.Segments[k].Seq >= rr.FirstSeq })
	if k+n <= len(ix.Segments) && ix.Segments[k].Seq == rr.FirstSeq && ix.Segments[k+n-1].Seq == rr.LastSeq {
		segs := append([]Segment(nil), ix.Segments[k:k+n]...)
		for i := range segs {
			segs[i].pack, segs[i].record = nil, rr.Key
		}
		s.attachPacks(segs, ix.Packs)
		return segs, nil
	}
	r, err := s.readRollup(ctx, rr)
	if err != nil {
		return nil, err
	}
	for i := range r.Segments {
		r.Segments[i].record = rr.Key
	}
	s.attachPacks(r.Segments, ix.Packs)
	return r.Segments, nil
}

// compactRollup packs the segments of one roll-up (segs, with their packs
// attached) that are not packed yet, and deletes the data objects of those
// that are, after checking the pack. present is the set of data object
// keys listed. It returns the packs written and the segments it could not
// pack, each with why.
func (s *Store) compactRollup(ctx context.Context, segs []Segment, present map[string]bool) (int, []string, error) {
	var problems []string
	// Packed segments whose data objects are still there: check each one's
	// bytes in its pack, read from storage (not a cache), then delete the
	// data object. A segment whose bytes there are wrong or gone is packed
	// anew below.
	var cur string
	var curData []byte
	var curErr error
	for i := range segs {
		seg := &segs[i]
		key := s.segmentDataKey(seg)
		if seg.pack == nil || !present[key] {
			continue
		}
		if seg.pack.key != cur {
			cur = seg.pack.key
			curData, curErr = s.getLimited(ctx, cur, seg.pack.size)
			if curErr == nil && int64(len(curData)) != seg.pack.size {
				curErr = fmt.Errorf("%w: pack %s holds %d bytes, its segments %d", ErrCorrupt, cur, len(curData), seg.pack.size)
			}
			if curErr != nil && !errors.Is(curErr, ErrCorrupt) && !errors.Is(curErr, storage.ErrNotFound) {
				return 0, problems, curErr
			}
		}
		if curErr != nil || !packHolds(curData, seg) {
			seg.pack = nil
			continue
		}
		if err := s.B.Delete(ctx, key); err != nil {
			return 0, problems, fmt.Errorf("delete packed binlog data object %s: %w", key, err)
		}
		delete(present, key)
	}
	curData = nil
	written := 0
	damaged := map[uint64]bool{}
	for i := 0; i < len(segs); {
		if segs[i].pack != nil || damaged[segs[i].Seq] {
			i++
			continue
		}
		if !present[s.segmentDataKey(&segs[i])] {
			problems = append(problems, fmt.Sprintf("segment %d: its data object %s is missing and no pack holds it", segs[i].Seq, s.segmentDataKey(&segs[i])))
			i++
			continue
		}
		j, size := i, int64(0)
		for j < len(segs) && segs[j].pack == nil && !damaged[segs[j].Seq] && present[s.segmentDataKey(&segs[j])] &&
			(j == i || size+segs[j].StoredSize <= s.packSize()) {
			size += segs[j].StoredSize
			j++
		}
		group := segs[i:j]
		bad, why, err := s.writePack(ctx, group)
		if err != nil {
			return written, problems, err
		}
		if bad >= 0 {
			// Pack the rest without it.
			problems = append(problems, why)
			damaged[group[bad].Seq] = true
			continue
		}
		i = j
		written++
		for k := range group {
			key := s.segmentDataKey(&group[k])
			if err := s.B.Delete(ctx, key); err != nil {
				return written, problems, fmt.Errorf("delete packed binlog data object %s: %w", key, err)
			}
			delete(present, key)
		}
	}
	return written, problems, nil
}

// packHolds says whether a pack's bytes hold seg's where its pack says.
func packHolds(data []byte, seg *Segment) bool {
	off := seg.pack.off
	if off < 0 || off+seg.StoredSize > int64(len(data)) {
		return false
	}
	sum := sha256.Sum256(data[off : off+seg.StoredSize])
	return hex.EncodeToString(sum[:]) == seg.SHA256
}

// writePack writes the pack of group (consecutive unpacked segments of one
// roll-up) from their data objects, each checked against its record, and
// reads it back; on success the segments of group have the pack attached.
// When the data object of group[bad] does not match its record or is gone,
// nothing is written and why says so (bad is -1 otherwise). A pack already there with the same
// bytes counts as written; one with other bytes (planted, or corrupt) is
// replaced, as group's data objects, all present and checked, are what it
// must hold.
func (s *Store) writePack(ctx context.Context, group []Segment) (bad int, why string, err error) {
	parts := make([][]byte, len(group))
	errs := make([]error, len(group))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < min(compactFetchers, len(group)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				seg := &group[k]
				key := s.segmentDataKey(seg)
				b, err := s.getLimited(ctx, key, seg.StoredSize)
				if err == nil {
					if sum := sha256.Sum256(b); int64(len(b)) != seg.StoredSize || hex.EncodeToString(sum[:]) != seg.SHA256 {
						err = fmt.Errorf("%w: segment %d (%s:%d-%d, %s): size or sha256 mismatch", ErrCorrupt, seg.Seq, seg.File, seg.Start, seg.End, key)
					}
				}
				parts[k], errs[k] = b, err
			}
		}()
	}
	for k := range group {
		next <- k
	}
	close(next)
	wg.Wait()
	for k, err := range errs {
		if errors.Is(err, ErrCorrupt) {
			return k, err.Error(), nil
		}
		if errors.Is(err, storage.ErrNotFound) {
			return k, fmt.Sprintf("segment %d: its data object %s went missing while it was being packed", group[k].Seq, s.segmentDataKey(&group[k])), nil
		}
		if err != nil {
			return -1, "", fmt.Errorf("read binlog data object %s to pack it: %w", s.segmentDataKey(&group[k]), err)
		}
	}
	buf := bytes.Join(parts, nil)
	first, last := group[0].Seq, group[len(group)-1].Seq
	key := s.packKey(first, last)
	err = s.B.Put(ctx, key, bytes.NewReader(buf), int64(len(buf)))
	if errors.Is(err, storage.ErrExists) {
		old, rerr := s.getLimited(ctx, key, int64(len(buf)))
		switch {
		case rerr == nil && bytes.Equal(old, buf):
			err = nil // written before: by an earlier attempt or another archiver
		case rerr != nil && !errors.Is(rerr, ErrCorrupt):
			return -1, "", fmt.Errorf("read binlog pack %s: %w", key, rerr)
		default:
			if err = s.B.Delete(ctx, key); err == nil {
				err = s.B.Put(ctx, key, bytes.NewReader(buf), int64(len(buf)))
			}
		}
	}
	if err != nil {
		return -1, "", fmt.Errorf("write binlog pack %s: %w", key, err)
	}
	// Read it back before anything is deleted.
	back, err := s.getLimited(ctx, key, int64(len(buf)))
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return -1, "", fmt.Errorf("read back binlog pack %s: %w", key, err)
	}
	if err != nil || !bytes.Equal(back, buf) {
		return -1, "", fmt.Errorf("%w: binlog pack %s read back differs from what was written: its data objects are kept", ErrCorrupt, key)
	}
	var off int64
	for k := range group {
		group[k].pack = &packLoc{key: key, off: off, size: int64(len(buf))}
		off += group[k].StoredSize
	}
	s.packs.mu.Lock()
	s.packs.entries = nil // a replaced pack may be cached
	s.packs.mu.Unlock()
	return -1, "", nil
}

// PackKey returns the key of the pack the segment's bytes are in, when
// ReadIndex found it packed ("" otherwise).
func (s *Segment) PackKey() string {
	if s.pack == nil {
		return ""
	}
	return s.pack.key
}
