package binlog

import (
	"context"
	"fmt"
	"time"
)

// Synthetic describes a generated archive: Segments segments of
// SegmentEvents bytes each, PerFile to a binlog file (the last segment of
// every full file names the next one, as a rotate does), one a second from
// Start. It is for tests and benchmarks of the archive's cost: the records
// are written by WriteSegment, exactly as the archiver writes them (and
// encrypted and authenticated when the Store encrypts); the events are not
// real binlog events.
type Synthetic struct {
	Segments      int
	PerFile       int
	SegmentEvents int
	Start         time.Time
	// FirstSeq is the number of the first segment (0: 1).
	FirstSeq uint64
	// Distinct gives every segment other bytes (by default they are all
	// alike), so that a read of one segment's bytes for another's shows.
	Distinct bool
}

// Generate writes the synthetic archive into st and returns the number of
// binlog files it spans.
func (g Synthetic) Generate(ctx context.Context, st *Store) (files int, err error) {
	if g.PerFile <= 0 || g.Segments <= 0 {
		return 0, fmt.Errorf("synthetic archive: segments and per_file must be positive")
	}
	size := max(g.SegmentEvents, 1)
	ev := make([]byte, size)
	for i := range ev {
		ev[i] = byte(i*7 + 3)
	}
	seq := max(g.FirstSeq, 1)
	for i := 0; i < g.Segments; i++ {
		n, k := i/g.PerFile, i%g.PerFile
		file := fmt.Sprintf("binlog.%06d", n+1)
		at := g.Start.Add(time.Duration(i) * time.Second).UTC()
		seg := &Segment{Seq: seq + uint64(i), File: file, Start: 4 + uint32(k*size), End: 4 + uint32((k+1)*size),
			FirstTime: at, LastTime: at, ServerID: 1, Identity: "server_id:1 domain:0", Events: 1,
			FirstGTID: fmt.Sprintf("0-1-%d", i+1), LastGTID: fmt.Sprintf("0-1-%d", i+1), ArchivedAt: at.Add(time.Second)}
		if g.Distinct {
			for j := range ev {
				ev[j] = byte(i*131 + j*7 + i>>8)
			}
		}
		if k == g.PerFile-1 {
			seg.Next = fmt.Sprintf("binlog.%06d", n+2)
		}
		if err := st.WriteSegment(ctx, seg, ev); err != nil {
			return 0, err
		}
		files = n + 1
	}
	return files, nil
}
