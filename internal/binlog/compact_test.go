package binlog

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// compactArchive is a rolled-up archive of distinct segments: files of
// perFile segments, the last one open; it returns the events of every
// segment as read before compaction.
func compactArchive(t *testing.T, st *Store, segments, perFile int) map[uint64][]byte {
	t.Helper()
	ctx := context.Background()
	_, err := Synthetic{Segments: segments, PerFile: perFile, SegmentEvents: 200, Start: synthStart, Distinct: true}.Generate(ctx, st)
	require.NoError(t, err)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	_, err = st.RollUp(ctx, ix)
	require.NoError(t, err)
	return readAll(t, st)
}

// readAll reads every segment through a fresh reader of st's repository.
func readAll(t *testing.T, st *Store) map[uint64][]byte {
	t.Helper()
	ctx := context.Background()
	r := &Store{B: st.B, Instance: st.Instance, Keys: st.Keys, Encrypt: st.Encrypt, CheckAllData: true}
	ix, err := r.ReadIndex(ctx)
	require.NoError(t, err)
	require.Empty(t, ix.Missing)
	out := map[uint64][]byte{}
	for i := range ix.Segments {
		raw, err := r.ReadSegment(ctx, &ix.Segments[i])
		require.NoError(t, err, "segment %d", ix.Segments[i].Seq)
		out[ix.Segments[i].Seq] = raw
	}
	return out
}

func keys(t *testing.T, b storage.Backend, prefix string) []string {
	t.Helper()
	objs, err := b.List(context.Background(), prefix)
	require.NoError(t, err)
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

func TestCompactPacksClosedFilesByteForByte(t *testing.T) {
	ctx := context.Background()
	for _, encrypt := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypt=%v", encrypt), func(t *testing.T) {
			cb := counting.New(memory.New())
			st := &Store{B: cb, Instance: "i1"}
			if encrypt {
				st.Keys, st.Encrypt = crypttest.Ring(t, crypttest.KEK(t)), true
			}
			want := compactArchive(t, st, 215, 40) // 5 closed files, 15 open
			ix, err := st.ReadTail(ctx)
			require.NoError(t, err)
			n, err := st.Compact(ctx, ix)
			require.NoError(t, err)
			assert.Equal(t, 5, n, "one pack per closed file (each far under PackTargetSize)")
			assert.Len(t, keys(t, cb, "i1/binlogs/pack/"), 5)
			assert.Len(t, keys(t, cb, "i1/binlogs/data/"), 15, "only the open file's data objects are left")
			assert.Equal(t, want, readAll(t, st), "every segment reads back byte for byte")

			// Idempotent, and a fresh reader sees every rolled-up segment packed.
			ix, err = st.ReadIndex(ctx)
			require.NoError(t, err)
			n, err = st.Compact(ctx, ix)
			require.NoError(t, err)
			assert.Zero(t, n)
			for _, seg := range ix.Segments {
				if seg.Seq <= 200 {
					assert.NotEmpty(t, seg.PackKey(), "segment %d", seg.Seq)
				} else {
					assert.Empty(t, seg.PackKey(), "segment %d of the open file", seg.Seq)
				}
			}

			// The catalog's views read no data listing of packed segments,
			// and reading a file's segments costs one request for its pack.
			cb.Reset()
			r := &Store{B: cb, Instance: "i1", Keys: st.Keys, Encrypt: st.Encrypt, CheckAllData: true}
			ix, err = r.ReadIndex(ctx)
			require.NoError(t, err)
			assert.Empty(t, ix.Missing)
			c := cb.Counts()
			// (Encrypted: the data key is read too, listed and got.)
			assert.Equal(t, 5+15+boolInt(encrypt), c.Get, "5 roll-ups and 15 records: %s", c)
			assert.Equal(t, 5+boolInt(encrypt), c.List, "roll-ups, records, gaps, packs, the open file's data: %s", c)
			cb.Reset()
			for i := range ix.Segments[:40] {
				_, err := r.ReadSegment(ctx, &ix.Segments[i])
				require.NoError(t, err)
			}
			assert.Equal(t, 1, cb.Counts().Requests(), "one pack for 40 segments: %s", cb.Counts())
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestCompactSplitsAtPackSize(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &Store{B: b, Instance: "i1"}
	want := compactArchive(t, st, 41, 40)
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	var size, biggest int64
	for _, seg := range ix.Segments[:40] {
		size, biggest = size+seg.StoredSize, max(biggest, seg.StoredSize)
	}
	st.PackSize = 3 * biggest
	n, err := st.Compact(ctx, ix)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 14, "40 segments, at most 3 a pack")
	var total int64
	for _, k := range keys(t, b, "i1/binlogs/pack/") {
		d := get(t, b, k)
		assert.LessOrEqual(t, int64(len(d)), st.PackSize, k)
		total += int64(len(d))
	}
	assert.Equal(t, size, total, "the packs hold the segments' bytes, once")
	assert.Equal(t, want, readAll(t, st))

	// A segment larger than the pack size is a pack of its own.
	st2 := &Store{B: memory.New(), Instance: "i1", PackSize: 1}
	want = compactArchive(t, st2, 12, 5)
	ix, err = st2.ReadTail(ctx)
	require.NoError(t, err)
	n, err = st2.Compact(ctx, ix)
	require.NoError(t, err)
	assert.Equal(t, 10, n)
	assert.Equal(t, want, readAll(t, st2))
}

// A compaction stopped after each of its writes (a pack put, a data
// object deleted) leaves an archive every reader reads whole, byte for
// byte, and a later compaction finishes.
func TestCompactCrashAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	for _, encrypt := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypt=%v", encrypt), func(t *testing.T) {
			kek := crypttest.KEK(t)
			mk := func() (*counting.Backend, *Store, map[uint64][]byte) {
				cb := counting.New(memory.New())
				st := &Store{B: cb, Instance: "i1"}
				if encrypt {
					st.Keys, st.Encrypt = crypttest.Ring(t, kek), true
				}
				want := compactArchive(t, st, 25, 10)
				return cb, st, want
			}
			cb, st, _ := mk()
			ix, err := st.ReadTail(ctx)
			require.NoError(t, err)
			cb.Reset()
			_, err = st.Compact(ctx, ix)
			require.NoError(t, err)
			total := cb.Counts().Put + cb.Counts().Delete
			require.Equal(t, 2+20, total, "2 packs, 20 deletes")
			for n := 1; n < total; n++ {
				cb, st, want := mk()
				ix, err := st.ReadTail(ctx)
				require.NoError(t, err)
				cb.FailAfter(n)
				_, err = st.Compact(ctx, ix)
				require.ErrorIs(t, err, counting.ErrInjected, "after %d writes", n)
				cb.FailAfter(0)
				require.Equal(t, want, readAll(t, st), "after %d writes: every segment, once, byte for byte", n)
				r := &Store{B: cb, Instance: "i1", Keys: st.Keys, Encrypt: st.Encrypt}
				ix, err = r.ReadTail(ctx)
				require.NoError(t, err)
				_, err = r.Compact(ctx, ix)
				require.NoError(t, err)
				require.Equal(t, want, readAll(t, st))
				assert.Len(t, keys(t, cb, "i1/binlogs/pack/"), 2, "after %d writes", n)
				assert.Len(t, keys(t, cb, "i1/binlogs/data/"), 5, "after %d writes: the packed data objects are gone", n)
			}
		})
	}
}

// A reader whose index was read before the compaction finds the pack of a
// segment whose data object is gone, once per pack.
func TestReadSegmentFindsThePackAfterCompaction(t *testing.T) {
	ctx := context.Background()
	cb := counting.New(memory.New())
	st := &Store{B: cb, Instance: "i1"}
	want := compactArchive(t, st, 215, 40)
	r := &Store{B: cb, Instance: "i1"}
	stale, err := r.ReadIndex(ctx)
	require.NoError(t, err)
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix)
	require.NoError(t, err)
	cb.Reset()
	for i := range stale.Segments[:80] {
		require.Empty(t, stale.Segments[i].PackKey())
		raw, err := r.ReadSegment(ctx, &stale.Segments[i])
		require.NoError(t, err)
		require.Equal(t, want[stale.Segments[i].Seq], raw)
	}
	c := cb.Counts()
	// Per pack: the data object (not found), a listing of packs and of
	// roll-ups, the roll-up and the pack; then 39 segments from the cache.
	assert.LessOrEqual(t, c.Requests(), 2*5, c.String())
}

// Hostile or damaged packs: a planted pack of the right size but other
// bytes never makes a compaction delete a data object, and a pack
// damaged after the compaction fails the reads of its segments naming it.
func TestCompactHostilePacks(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &Store{B: b, Instance: "i1"}
	want := compactArchive(t, st, 85, 40)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	var size int64
	for _, seg := range ix.Segments[:40] {
		size += seg.StoredSize
	}
	planted := st.packKey(1, 40)
	junk := bytes.Repeat([]byte{0x5a}, int(size))
	require.NoError(t, b.Put(ctx, planted, bytes.NewReader(junk), size))
	// A planted pack of another name, and one over a range of two files.
	require.NoError(t, b.Put(ctx, "i1/binlogs/pack/not-a-pack.zst", strings.NewReader("x"), 1))
	require.NoError(t, b.Put(ctx, st.packKey(30, 50), strings.NewReader("x"), 1))

	got := readAll(t, st)
	assert.Equal(t, want, got, "reads pass over the planted pack to the data objects")
	smalls := map[string][]byte{}
	for _, k := range keys(t, b, "i1/binlogs/data/") {
		smalls[k] = get(t, b, k)
	}
	ix, err = st.ReadTail(ctx)
	require.NoError(t, err)
	n, err := st.Compact(ctx, ix)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "the planted pack is replaced with the true one")
	assert.Equal(t, want, readAll(t, st))
	assert.NotEqual(t, junk, get(t, b, planted))

	// Damage the pack now that the data objects are gone.
	good := get(t, b, planted)
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 0xff
	require.NoError(t, b.Delete(ctx, planted))
	require.NoError(t, b.Put(ctx, planted, bytes.NewReader(bad), int64(len(bad))))
	r := &Store{B: b, Instance: "i1"}
	ix, err = r.ReadIndex(ctx)
	require.NoError(t, err)
	var failed []uint64
	for i := range ix.Segments[:40] {
		_, err := r.ReadSegment(ctx, &ix.Segments[i])
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Contains(t, err.Error(), planted)
			assert.Contains(t, err.Error(), ix.Rollups[0].Key, "the error names the roll-up that holds the record")
			failed = append(failed, ix.Segments[i].Seq)
		}
	}
	assert.Len(t, failed, 1, "only the segment whose bytes were hit")
	// The damaged segment's data object comes back (a copy kept, or left by
	// a compaction that stopped): the next compaction packs it anew, and
	// every segment reads again; the pack is kept for its other segments.
	seg := ix.Segments[failed[0]-1]
	kept := smalls[st.segmentDataKey(&seg)]
	require.NotEmpty(t, kept)
	require.NoError(t, b.Put(ctx, st.segmentDataKey(&seg), bytes.NewReader(kept), int64(len(kept))))
	ix, err = r.ReadTail(ctx)
	require.NoError(t, err)
	n, err = r.Compact(ctx, ix)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, bad, get(t, b, planted))
	_, err = b.Stat(ctx, st.segmentDataKey(&seg))
	require.ErrorIs(t, err, storage.ErrNotFound, "packed anew, its data object is deleted")
	assert.Equal(t, want, readAll(t, st))
}

// A data object that does not match its record is not packed: the rest of
// its file is, and the damaged segment stays for verify to report.
func TestCompactLeavesADamagedSegmentUnpacked(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &Store{B: b, Instance: "i1"}
	compactArchive(t, st, 85, 40)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	seg := ix.Segments[9]
	key := st.segmentDataKey(&seg)
	data := get(t, b, key)
	data[0] ^= 0xff
	require.NoError(t, b.Delete(ctx, key))
	require.NoError(t, b.Put(ctx, key, bytes.NewReader(data), int64(len(data))))

	n, err := st.Compact(ctx, ix)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), key)
	assert.Equal(t, 3, n, "segments 1-9, 11-40 and the second file")
	_, err = b.Stat(ctx, key)
	require.NoError(t, err, "the damaged data object is kept")
	r := &Store{B: b, Instance: "i1", CheckAllData: true}
	ix, err = r.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Empty(t, ix.Missing)
	_, err = r.ReadSegment(ctx, &ix.Segments[9])
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = r.ReadSegment(ctx, &ix.Segments[10])
	require.NoError(t, err)
}

// A pack whose data is gone (deleted by hand, or by a writer of the
// bucket) shows in the catalog's views as a gap, like a missing data
// object.
func TestMissingPackEndsTheWindow(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &Store{B: b, Instance: "i1"}
	compactArchive(t, st, 85, 40)
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix)
	require.NoError(t, err)
	require.NoError(t, b.Delete(ctx, st.packKey(41, 80)))
	r := &Store{B: b, Instance: "i1", CheckAllData: true}
	ix, err = r.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Missing, 40)
	assert.Equal(t, uint64(41), ix.Missing[0].Seq)
	assert.Len(t, ix.Runs(), 2, "the window ends before the first segment of the lost pack")
	_, err = r.ReadSegment(ctx, &ix.Missing[0])
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "no pack holds it")
}
