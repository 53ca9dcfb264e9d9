package binlog

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// clockBackend stamps the objects put into it with the time of its clock
// instead of the wall clock's, so that a test sets when each was written.
type clockBackend struct {
	storage.Backend
	mu  sync.Mutex
	now time.Time
	at  map[string]time.Time
}

func newClockBackend(now time.Time) *clockBackend {
	return &clockBackend{Backend: memory.New(), now: now, at: map[string]time.Time{}}
}

func (c *clockBackend) set(now time.Time) { c.mu.Lock(); c.now = now; c.mu.Unlock() }

func (c *clockBackend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := c.Backend.Put(ctx, key, r, size); err != nil {
		return err
	}
	c.mu.Lock()
	c.at[key] = c.now
	c.mu.Unlock()
	return nil
}

func (c *clockBackend) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	objs, err := c.Backend.List(ctx, prefix)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range objs {
		objs[i].ModTime = c.at[objs[i].Key]
	}
	return objs, err
}

func plant(t *testing.T, b storage.Backend, key string, data string) {
	t.Helper()
	require.NoError(t, b.Put(context.Background(), key, bytes.NewReader([]byte(data)), int64(len(data))))
}

// TestBillCountsWhatWasWritten: 90 minutes of 1-s segments, five files
// rolled up, and a gap, a key, a pack, an orphan data object and two
// objects of unknown names planted: the bill counts each object stored in
// its kind (the unknown ones as other), the bytes the listing has, and
// the writes of the last hour and per hour from the segments' archive
// times and the other objects' write times, each once.
func TestBillCountsWhatWasWritten(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cb := newClockBackend(t0)
	b := counting.New(cb)
	st := &Store{B: b, Instance: "i1"}
	// Segment i is archived at t0-90min+(i+1)s: the last at t0.
	_, err := Synthetic{Segments: 5400, PerFile: 1000, SegmentEvents: 64, Start: t0.Add(-90 * time.Minute)}.Generate(ctx, st)
	require.NoError(t, err)

	cb.set(t0.Add(10 * time.Minute))
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	n, err := st.RollUp(ctx, ix)
	require.NoError(t, err)
	require.Equal(t, 5, n, "the five closed files")
	require.NoError(t, st.WriteGap(ctx, &Gap{BeforeSeq: 5401, ResumeFile: "binlog.000007", ResumePos: 4, Reason: "test", DetectedAt: t0}))
	require.NoError(t, repo.BinlogKeys(b, "i1", "ref1").Write(ctx, repo.KeyObject{KEKID: "k1", Wrapped: []byte("wrapped")}))
	plant(t, b, "i1/binlogs/pack/000000000001-000000001000.zst", "packed bytes")
	plant(t, b, "i1/binlogs/data/000000009999-0123456789ab.zst", "orphan")
	plant(t, b, "i1/binlogs/junk.txt", "planted")
	plant(t, b, "i10/binlogs/index/000000000001.json", "another instance")

	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 5400)
	// (ReadIndex refuses it: planted after the index is read.)
	plant(t, b, "i1/binlogs/index/README", "planted too")
	now := t0.Add(10 * time.Minute)
	b.Reset()
	bill, err := st.Bill(ctx, ix, now)
	require.NoError(t, err)
	assert.Equal(t, counting.Counts{List: 1, ListPages: 6}, b.Counts(), "one listing, no object read")
	assert.Equal(t, 6, bill.ListPages)

	// What is stored, by kind, against the backend's own listing.
	all, err := cb.List(ctx, "i1/binlogs/")
	require.NoError(t, err)
	var total int64
	for _, o := range all {
		total += o.Size
	}
	dataSize := ix.Segments[0].StoredSize
	assert.Equal(t, map[string]int{BillRecords: 400, BillRollups: 5, BillData: 5401, BillPacks: 1, BillGaps: 1, BillKeys: 1, BillOther: 2}, bill.Objects)
	assert.Equal(t, len(all), bill.TotalObjects)
	assert.Equal(t, 5811, bill.TotalObjects)
	assert.Equal(t, total, bill.TotalBytes)
	assert.Equal(t, 5400*dataSize+int64(len("orphan")), bill.Bytes[BillData])
	assert.Equal(t, int64(len("packed bytes")), bill.Bytes[BillPacks])
	assert.Equal(t, int64(len("planted")+len("planted too")), bill.Bytes[BillOther])
	var kinds int64
	for _, k := range BillKinds {
		kinds += bill.Bytes[k]
	}
	assert.Equal(t, total, kinds)

	// Writes: two per segment (4,600 records since deleted by the
	// roll-ups included), one per other object (5 roll-ups, gap, key,
	// pack, orphan, 2 others). The last hour, (t0-50min, t0+10min], holds
	// the segments 2401..5400 and the others.
	assert.Equal(t, 2*5400+11, bill.Writes)
	assert.Equal(t, 2*3000+11, bill.WritesLastHour)
	oldest := t0.Add(-90*time.Minute + time.Second)
	assert.Equal(t, oldest, bill.Oldest)
	assert.Equal(t, oldest, bill.AvgSince, "younger than a day: averaged since the oldest write")
	assert.InDelta(t, now.Sub(oldest).Hours(), bill.AvgHours, 1e-9)
	assert.InDelta(t, float64(2*5400+11)/now.Sub(oldest).Hours(), bill.WritesPerHour, 1e-6)

	// A day later, nothing new: no writes in the last hour, the 24-h
	// average only holds what is younger than a day.
	late := t0.Add(23*time.Hour + 5*time.Minute)
	bill = NewBill("i1", ix, all, late)
	assert.Equal(t, 0, bill.WritesLastHour)
	assert.Equal(t, late.Add(-24*time.Hour), bill.AvgSince)
	assert.InDelta(t, 24, bill.AvgHours, 1e-9)
	// Younger than a day at late: archived after t0-55min (segments
	// 2101..5400) and the others at t0+10min.
	assert.InDelta(t, float64(2*3300+11)/24, bill.WritesPerHour, 1e-6)
	assert.Equal(t, 2*5400+11, bill.Writes)
}

// TestBillOfAnEmptyArchive: nothing stored, nothing written, every kind
// shown as zero, one listing request.
func TestBillOfAnEmptyArchive(t *testing.T) {
	ctx := context.Background()
	b := counting.New(memory.New())
	st := &Store{B: b, Instance: "i1"}
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	b.Reset()
	bill, err := st.Bill(ctx, ix, time.Now())
	require.NoError(t, err)
	assert.Equal(t, counting.Counts{List: 1, ListPages: 1}, b.Counts())
	assert.Len(t, bill.Objects, len(BillKinds))
	for _, k := range BillKinds {
		assert.Zero(t, bill.Objects[k], k)
		assert.Zero(t, bill.Bytes[k], k)
	}
	assert.Zero(t, bill.TotalObjects)
	assert.Zero(t, bill.Writes)
	assert.Zero(t, bill.WritesLastHour)
	assert.Zero(t, bill.WritesPerHour)
	assert.True(t, bill.Oldest.IsZero())
	assert.Equal(t, 1, bill.ListPages)
}

// TestBillOfAnArchiveYoungerThanAnHour: ten minutes of segments show as
// their writes so far per hour (averaged over one hour, not extrapolated
// from ten minutes).
func TestBillOfAnArchiveYoungerThanAnHour(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := &Store{B: newClockBackend(t0), Instance: "i1"}
	_, err := Synthetic{Segments: 600, PerFile: 10000, SegmentEvents: 16, Start: t0.Add(-10 * time.Minute)}.Generate(ctx, st)
	require.NoError(t, err)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	bill, err := st.Bill(ctx, ix, t0)
	require.NoError(t, err)
	assert.Equal(t, 1200, bill.Objects[BillRecords]+bill.Objects[BillData])
	assert.Equal(t, 1200, bill.Writes)
	assert.Equal(t, 1200, bill.WritesLastHour)
	assert.Equal(t, t0.Add(-10*time.Minute+time.Second), bill.AvgSince)
	assert.InDelta(t, 1, bill.AvgHours, 1e-9)
	assert.InDelta(t, 1200, bill.WritesPerHour, 1e-9)
}

// TestBillOfACompactedArchive: once closed files are compacted, their data
// objects are gone from the listing and their packs are in it: the writes
// still count each segment's data object and record, and each pack once.
func TestBillOfACompactedArchive(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cb := newClockBackend(t0)
	st := &Store{B: cb, Instance: "i1"}
	_, err := Synthetic{Segments: 250, PerFile: 100, SegmentEvents: 64, Start: t0.Add(-20 * time.Minute)}.Generate(ctx, st)
	require.NoError(t, err)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	rollups, err := st.RollUp(ctx, ix)
	require.NoError(t, err)
	require.Equal(t, 2, rollups)
	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	packs, err := st.Compact(ctx, ix)
	require.NoError(t, err)
	require.Positive(t, packs)

	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	bill, err := st.Bill(ctx, ix, t0)
	require.NoError(t, err)
	assert.Equal(t, packs, bill.Objects[BillPacks])
	assert.Equal(t, 50, bill.Objects[BillData], "the open file's")
	assert.Equal(t, 50, bill.Objects[BillRecords], "the open file's")
	assert.Equal(t, 2, bill.Objects[BillRollups])
	assert.Zero(t, bill.Objects[BillOther])
	assert.Equal(t, 2*250+rollups+packs, bill.Writes)
	assert.Equal(t, bill.Writes, bill.WritesLastHour)
}
