package binlog

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// TestIndexCache reads an archive of roll-ups, records and a gap again
// with a Cache and IndexOnly: the second read fetches nothing and lists
// the index alone; objects written since are fetched once, deleted ones
// leave the cache, and the segments are those an uncached ReadIndex reads.
func TestIndexCache(t *testing.T) {
	ctx := context.Background()
	cb := counting.New(memory.New())
	plain := &Store{B: cb, Instance: "i1"}
	smallArchive(t, plain)
	ix, err := plain.ReadIndex(ctx)
	require.NoError(t, err)
	_, err = plain.RollUp(ctx, ix)
	require.NoError(t, err)
	require.NoError(t, plain.WriteGap(ctx, &Gap{BeforeSeq: 216, ResumeFile: "binlog.000099", ResumePos: 4, Reason: "test", DetectedAt: synthStart}))

	cached := &Store{B: cb, Instance: "i1", IndexOnly: true, Cache: &IndexCache{}}
	read := func() *Index {
		t.Helper()
		got, err := cached.ReadIndex(ctx)
		require.NoError(t, err)
		want, err := plain.ReadIndex(ctx)
		require.NoError(t, err)
		assert.Equal(t, segmentsJSON(t, want), segmentsJSON(t, got))
		assert.Equal(t, want.Gaps, got.Gaps)
		return got
	}
	cb.Reset()
	got, err := cached.ReadIndex(ctx)
	require.NoError(t, err)
	c := cb.Counts()
	assert.Equal(t, 5+15+1, c.Get, "5 roll-ups, 15 records, a gap: %s", c)
	assert.Equal(t, 3, c.List, "roll-ups, records, gaps; no packs or data: %s", c)
	assert.Empty(t, got.Missing)
	assert.Equal(t, 5+15+1, cached.Cache.Len())

	cb.Reset()
	got, err = cached.ReadIndex(ctx)
	require.NoError(t, err)
	c = cb.Counts()
	assert.Zero(t, c.Get, "nothing new to fetch: %s", c)
	assert.Equal(t, 3, c.Requests(), c.String())
	require.Len(t, got.Segments, 215)
	read()

	// A new segment is fetched once.
	last := got.Last()
	seg := &Segment{Seq: 216, File: last.File, Start: last.End, End: last.End + 10, FirstTime: last.LastTime, LastTime: last.LastTime, Events: 1}
	require.NoError(t, plain.WriteSegment(ctx, seg, make([]byte, 10)))
	cb.Reset()
	got, err = cached.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, cb.Counts().Get, cb.Counts().String())
	assert.Equal(t, uint64(216), got.Last().Seq)
	read()

	// A deleted record (pruned) leaves the index and the cache.
	require.NoError(t, cb.B.Delete(ctx, plain.indexKey(216)))
	got, err = cached.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(215), got.Last().Seq)
	assert.Equal(t, 5+15+1, cached.Cache.Len())
	read()
}

// TestCondensed: the condensed index has a segment per stretch of a file
// and the same windows as the index for a backup at any position.
func TestCondensed(t *testing.T) {
	ctx := context.Background()
	st := &Store{B: memory.New(), Instance: "i1"}
	smallArchive(t, st)
	require.NoError(t, st.WriteGap(ctx, &Gap{BeforeSeq: 100, ResumeFile: "binlog.000099", ResumePos: 4, Reason: "test", DetectedAt: synthStart}))
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	ix.Missing = append(ix.Missing, ix.Segments[150]) // as CheckAllData finds one
	c := ix.Condensed()
	assert.Less(t, len(c.Segments), 12, "a segment per stretch of a file")
	assert.Equal(t, len(ix.Runs()), len(c.Runs()))
	for i, s := range ix.Segments {
		for _, pos := range []uint32{s.Start, s.End} {
			b := []*manifest.Manifest{{BackupID: "b", BinlogFile: s.File, BinlogPos: uint64(pos), ConsistentAt: s.FirstTime}}
			assert.Equal(t, Windows(b, ix), Windows(b, c), "a backup at segment %d %s:%d", i, s.File, pos)
		}
	}
}
