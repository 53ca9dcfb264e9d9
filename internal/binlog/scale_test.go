package binlog

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// The 7-day archive at 1-s segments: 604,800 records, a binlog file per
// 4,000 segments (151 closed files and an open one of 800 segments).
const (
	weekSegments = 7 * 24 * 3600
	weekPerFile  = 4000
	weekFiles    = 152
	weekTail     = weekSegments - (weekFiles-1)*weekPerFile
)

var week struct {
	once       sync.Once
	b          *counting.Backend
	st         *Store
	before     Counts
	beforeSegs int
	err        error
}

// Counts is counting.Counts (short).
type Counts = counting.Counts

// generateWeek writes the 7-day archive into st.
func generateWeek(ctx context.Context, st *Store) error {
	files, err := Synthetic{Segments: weekSegments, PerFile: weekPerFile, SegmentEvents: 64, Start: synthStart}.Generate(ctx, st)
	if err != nil {
		return err
	}
	if files != weekFiles {
		return fmt.Errorf("generated %d files, want %d", files, weekFiles)
	}
	return nil
}

// weekArchive generates the 7-day archive once per test binary, reads
// its index as individual records (the cost before roll-ups), and rolls
// it up.
func weekArchive(t *testing.T) (*counting.Backend, *Store) {
	t.Helper()
	if testing.Short() {
		t.Skip("the 7-day archive takes a while: not with -short")
	}
	week.once.Do(func() {
		ctx := context.Background()
		t0 := time.Now()
		week.b = counting.New(memory.New())
		week.st = &Store{B: week.b, Instance: "i1"}
		if err := generateWeek(ctx, week.st); err != nil {
			week.err = err
			return
		}
		t1 := time.Now()
		week.b.Reset()
		ix, err := week.st.ReadIndex(ctx)
		if err != nil {
			week.err = err
			return
		}
		week.before, week.beforeSegs = week.b.Counts(), len(ix.Segments)
		t2 := time.Now()
		week.b.Reset()
		n, err := week.st.RollUp(ctx, ix)
		if err != nil {
			week.err = err
			return
		}
		fmt.Fprintf(os.Stderr, "7-day archive: generated %d segments in %s; ReadIndex before roll-up %s, %s; %d roll-ups in %s, %s\n",
			weekSegments, t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), week.before,
			n, time.Since(t2).Round(time.Millisecond), week.b.Counts())
	})
	require.NoError(t, week.err)
	return week.b, week.st
}

// TestWeekArchiveResumeIsBounded: an archiver's resume (ReadTail and the
// orphan sweeps a run starts with) on the 7-day archive makes a number of
// requests bounded by the files plus the tail, and finds the archive's
// last segment.
func TestWeekArchiveResumeIsBounded(t *testing.T) {
	b, st := weekArchive(t)
	ctx := context.Background()
	b.Reset()
	t0 := time.Now()
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	require.NoError(t, st.RemoveOrphans(ctx, ix))
	require.NoError(t, st.SweepOrphanPage(ctx, ix, time.Now(), orphanSweepEvery))
	c := b.Counts()
	t.Logf("resume: %s in %s (before roll-ups, ReadIndex alone: %s)", c, time.Since(t0).Round(time.Millisecond), week.before)
	require.NotNil(t, ix.Last())
	assert.Equal(t, uint64(weekSegments), ix.Last().Seq)
	assert.Len(t, ix.Rollups, weekFiles-1)
	assert.LessOrEqual(t, c.Requests(), weekFiles+weekTail, c.String())
	assert.Equal(t, 0, c.Delete+c.Put, "nothing to remove")
	assert.Greater(t, week.before.Requests(), weekSegments, "before: a request per record")
}

// TestWeekArchivePITRPlanningIsBounded: planning a point-in-time restore
// (the index read twice, as the PITR activities do, then the window and
// the covering segments of a point inside a rolled-up file) is bounded
// by the files plus the tail, and lands on the exact segment.
func TestWeekArchivePITRPlanningIsBounded(t *testing.T) {
	b, st := weekArchive(t)
	ctx := context.Background()
	b.Reset()
	t0 := time.Now()
	var ix *Index
	for range 2 {
		var err error
		ix, err = st.ReadIndex(ctx)
		require.NoError(t, err)
	}
	c := b.Counts()
	t.Logf("PITR planning: %s in %s (before roll-ups, one ReadIndex: %s)", c, time.Since(t0).Round(time.Millisecond), week.before)
	require.Len(t, ix.Segments, weekSegments, "every segment, each once")
	require.Equal(t, week.beforeSegs, len(ix.Segments))
	for i := range ix.Segments {
		if ix.Segments[i].Seq != uint64(i+1) {
			t.Fatalf("segment %d is %d", i, ix.Segments[i].Seq)
		}
	}
	// Each read: a roll-up per closed file, a record per tail segment and
	// four listings (roll-ups, records, gaps, the tail's data).
	assert.LessOrEqual(t, c.Requests(), 2*(weekFiles+weekTail+4), c.String())

	// A backup at the start of file 10; a point 3 days in (file 65).
	bk := &manifest.Manifest{BackupID: "b1", BinlogFile: "binlog.000010", BinlogPos: 4, ConsistentAt: synthStart}
	w := Windows([]*manifest.Manifest{bk}, ix)
	require.Len(t, w, 1)
	segs, err := ix.Covering("binlog.000010", 4)
	require.NoError(t, err)
	target := synthStart.Add(3 * 24 * time.Hour).Add(17 * time.Second)
	var hit *Segment
	for i := range segs {
		if !segs[i].FirstTime.After(target) && !segs[i].LastTime.Before(target) {
			hit = &segs[i]
			break
		}
	}
	require.NotNil(t, hit)
	assert.Equal(t, uint64(3*24*3600+17+1), hit.Seq)
	assert.Equal(t, fmt.Sprintf("0-1-%d", 3*24*3600+17+1), hit.LastGTID)
	_, err = st.ReadSegment(ctx, hit)
	require.NoError(t, err)
}

// TestWeekArchiveCompaction: compacting the 7-day archive leaves a pack
// per closed file and the open file's data objects, every segment readable
// where it was, and the catalog's views (ls, archive status: ReadIndex
// with CheckAllData) no longer list a data object per second of history.
// (It changes the shared archive; the other week tests hold before and
// after it.)
func TestWeekArchiveCompaction(t *testing.T) {
	b, st := weekArchive(t)
	ctx := context.Background()
	view := &Store{B: b, Instance: "i1", CheckAllData: true}
	b.Reset()
	ix, err := view.ReadIndex(ctx)
	require.NoError(t, err)
	viewBefore := b.Counts()
	require.Empty(t, ix.Missing)

	b.Reset()
	t0 := time.Now()
	tail, err := st.ReadTail(ctx)
	require.NoError(t, err)
	n, err := st.Compact(ctx, tail)
	require.NoError(t, err)
	compact := b.Counts()
	t.Logf("compaction: %d packs, %s in %s", n, compact, time.Since(t0).Round(time.Millisecond))
	if len(ix.Packs) == 0 {
		assert.Equal(t, weekFiles-1, n, "a pack per closed file")
	}
	packs, err := b.B.List(ctx, "i1/binlogs/pack/")
	require.NoError(t, err)
	assert.Len(t, packs, weekFiles-1)
	data, err := b.B.List(ctx, "i1/binlogs/data/")
	require.NoError(t, err)
	assert.Len(t, data, weekTail, "only the open file's data objects are left")

	b.Reset()
	after, err := view.ReadIndex(ctx)
	require.NoError(t, err)
	viewAfter := b.Counts()
	t.Logf("ls/status index read: before compaction %s, after %s", viewBefore, viewAfter)
	require.Len(t, after.Segments, weekSegments)
	assert.Empty(t, after.Missing)
	assert.Equal(t, viewAfter.List, viewAfter.ListPages, "every listing is one page: the tail's data, not a page per 1,000 s of history")
	assert.LessOrEqual(t, viewAfter.Requests(), weekFiles+weekTail+5, viewAfter.String())
	if len(ix.Packs) == 0 {
		assert.Greater(t, viewBefore.ListPages, weekSegments/1000, "before: all of data/ is listed")
	}
	// Spot checks in packed files and the tail.
	for _, seq := range []uint64{1, 4000, 4001, 300017, weekSegments - weekTail, weekSegments} {
		seg := after.Segments[seq-1]
		require.Equal(t, seq, seg.Seq)
		_, err := view.ReadSegment(ctx, &seg)
		require.NoError(t, err, "segment %d", seq)
		assert.Equal(t, seq <= weekSegments-weekTail, seg.PackKey() != "", "segment %d", seq)
	}
}
