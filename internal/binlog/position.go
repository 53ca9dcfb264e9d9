package binlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
)

// PositionOf returns the binlog position of a MySQL server's state whose
// executed GTID set is set (a clone's, which records no binlog position):
// the start of the first archived transaction that set does not hold (in
// the next file when the file ends first), or the end of the archive. It reads the
// segments from the first whose executed set holds set, in its hole-free
// run. A backup that records this position replays from it like one that
// recorded its own. ErrNotInArchive when no run holds the point.
func (st *Store) PositionOf(ctx context.Context, ix *Index, set gtid.Set) (file string, pos uint32, err error) {
	if set.Flavor() != flavor.MySQL && !set.IsEmpty() {
		return "", 0, fmt.Errorf("PositionOf takes a MySQL GTID set, not a %s one", set.Flavor())
	}
	for _, run := range ix.Runs() {
		for i := range run {
			s := &run[i]
			if s.Executed == "" {
				continue
			}
			have, err := gtid.Parse(flavor.MySQL, s.Executed)
			if err != nil {
				return "", 0, fmt.Errorf("%w: segment %d: executed GTID set: %v", ErrCorrupt, s.Seq, err)
			}
			if !have.Contains(set) {
				continue
			}
			// The executed set at the segment's start: its predecessor's,
			// or the file's Previous_gtids event, read below.
			var cur gtid.Set
			known := false
			if i > 0 && run[i-1].File == s.File && run[i-1].Executed != "" {
				if cur, err = gtid.Parse(flavor.MySQL, run[i-1].Executed); err != nil {
					return "", 0, fmt.Errorf("%w: segment %d: executed GTID set: %v", ErrCorrupt, run[i-1].Seq, err)
				}
				known = true
			} else if s.Start != 4 {
				return "", 0, fmt.Errorf("%w: the executed GTID set at %s:%d is not recorded", ErrNotInArchive, s.File, s.Start)
			}
			return st.walkTo(ctx, run[i:], set, cur, known)
		}
	}
	return "", 0, fmt.Errorf("%w: no archived stretch reaches GTID set %s", ErrNotInArchive, set)
}

// walkTo reads segs from the first on, with cur the executed set at its
// start (if known), to the first transaction start at which cur holds set.
func (st *Store) walkTo(ctx context.Context, segs []Segment, set, cur gtid.Set, known bool) (string, uint32, error) {
	checksum := false
	for i := range segs {
		s := &segs[i]
		raw, err := st.ReadSegment(ctx, s)
		if err != nil {
			return "", 0, err
		}
		off := s.Start
		for p := 0; p < len(raw); {
			if len(raw)-p < headerSize {
				return "", 0, fmt.Errorf("%w: segment %d: %d bytes left, shorter than an event header", ErrCorrupt, s.Seq, len(raw)-p)
			}
			size := int(binary.LittleEndian.Uint32(raw[p+9:]))
			if size < headerSize || p+size > len(raw) {
				return "", 0, fmt.Errorf("%w: segment %d at %s:%d: event size %d", ErrCorrupt, s.Seq, s.File, off, size)
			}
			h, err := parseHeader(raw[p : p+size])
			if err != nil {
				return "", 0, fmt.Errorf("%w: segment %d at %s:%d: %v", ErrCorrupt, s.Seq, s.File, off, err)
			}
			ev := raw[p : p+size]
			switch {
			case h.Type == evFormatDesc:
				checksum = formatHasChecksum(ev)
			case h.Type == evPrevGTIDs:
				prev, err := previousGTIDs(ev, checksum)
				if err != nil {
					return "", 0, fmt.Errorf("%w: segment %d at %s:%d: %v", ErrCorrupt, s.Seq, s.File, off, err)
				}
				if cur, err = gtid.Parse(flavor.MySQL, prev); err != nil {
					return "", 0, fmt.Errorf("%w: segment %d at %s:%d: %v", ErrCorrupt, s.Seq, s.File, off, err)
				}
				known = true
			case isGTIDEvent(h.Type):
				if known && cur.Contains(set) {
					return s.File, off, nil
				}
				if g := gtidOf(h, ev); g != "" && known {
					if cur, err = cur.Add(g); err != nil {
						return "", 0, err
					}
				}
			}
			off += h.Size
			p += size
		}
	}
	last := segs[len(segs)-1]
	switch {
	case known && cur.Contains(set) && last.Next != "":
		return last.Next, 4, nil
	case known && cur.Contains(set):
		return last.File, last.End, nil
	}
	return "", 0, fmt.Errorf("%w: the archive ends at %s:%d before GTID set %s", ErrNotInArchive, last.File, last.End, set)
}

// formatHasChecksum says whether a format description event (and so the
// events of its file) carries a CRC32: its checksum algorithm byte, right
// before its own checksum, is 1, and that checksum matches.
func formatHasChecksum(fde []byte) bool {
	n := len(fde)
	return n > headerSize+5 && fde[n-5] == 1 && crc32.ChecksumIEEE(fde[:n-4]) == binary.LittleEndian.Uint32(fde[n-4:])
}
