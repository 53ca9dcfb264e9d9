package binlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
)

var synthStart = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

// smallArchive is 5 closed files of 40 segments and an open one of 15.
func smallArchive(t *testing.T, st *Store) {
	t.Helper()
	files, err := Synthetic{Segments: 215, PerFile: 40, SegmentEvents: 64, Start: synthStart}.Generate(context.Background(), st)
	require.NoError(t, err)
	require.Equal(t, 6, files)
}

func segmentsJSON(t *testing.T, ix *Index) string {
	t.Helper()
	b, err := json.Marshal(ix.Segments)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d segments, sha256 %x", len(ix.Segments), sum)
}

func TestRollUpBoundsReadIndex(t *testing.T) {
	ctx := context.Background()
	cb := counting.New(memory.New())
	st := &Store{B: cb, Instance: "i1"}
	smallArchive(t, st)
	before, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, before.Segments, 215)

	n, err := st.RollUp(ctx, before)
	require.NoError(t, err)
	assert.Equal(t, 5, n, "one roll-up per closed file; the open file stays individual records")
	n, err = st.RollUp(ctx, before)
	require.NoError(t, err)
	assert.Zero(t, n, "idempotent")

	cb.Reset()
	after, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Equal(t, segmentsJSON(t, before), segmentsJSON(t, after), "the same segments, each once")
	assert.Empty(t, after.Missing)
	c := cb.Counts()
	// 4 listings (roll-ups, records, gaps, packs) + the tail's data + 5 roll-ups + 15 records.
	assert.Equal(t, 5+15, c.Get, c.String())
	assert.LessOrEqual(t, c.Requests(), 5+15+5, c.String())
	objs, err := cb.B.List(ctx, "i1/binlogs/index/")
	require.NoError(t, err)
	assert.Len(t, objs, 15, "rolled-up records are deleted")

	// The archive reads back byte for byte from rolled-up records.
	for _, seg := range after.Segments[:3] {
		_, err := st.ReadSegment(ctx, &seg)
		require.NoError(t, err)
	}
}

// TestRollUpCrashAtEveryWrite stops a roll-up after each of its writes
// and deletes in turn: what is left reads as the same archive, and the
// next roll-up finishes the job.
func TestRollUpCrashAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	for _, encrypt := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypt=%v", encrypt), func(t *testing.T) {
			mk := func() (*counting.Backend, *Store) {
				cb := counting.New(memory.New())
				st := &Store{B: cb, Instance: "i1"}
				if encrypt {
					st.Keys, st.Encrypt = crypttest.Ring(t, crypttest.KEK(t)), true
				}
				_, err := Synthetic{Segments: 25, PerFile: 10, SegmentEvents: 32, Start: synthStart}.Generate(ctx, st)
				require.NoError(t, err)
				return cb, st
			}
			cb, st := mk()
			ix, err := st.ReadIndex(ctx)
			require.NoError(t, err)
			cb.Reset()
			_, err = st.RollUp(ctx, ix)
			require.NoError(t, err)
			total := cb.Counts().Put + cb.Counts().Delete
			require.Equal(t, 2+20, total, "2 roll-ups, 20 deletes")
			for n := 1; n < total; n++ {
				cb, st := mk()
				ix, err := st.ReadIndex(ctx)
				require.NoError(t, err)
				want := segmentsJSON(t, ix)
				cb.FailAfter(n)
				_, err = st.RollUp(ctx, ix)
				require.ErrorIs(t, err, counting.ErrInjected, "after %d writes", n)
				cb.FailAfter(0)
				// A fresh reader (another process) sees the same archive.
				r := &Store{B: cb, Instance: "i1", Keys: st.Keys, Encrypt: st.Encrypt}
				got, err := r.ReadIndex(ctx)
				require.NoError(t, err, "after %d writes", n)
				require.Equal(t, want, segmentsJSON(t, got), "after %d writes", n)
				_, err = r.RollUp(ctx, got)
				require.NoError(t, err)
				got, err = r.ReadIndex(ctx)
				require.NoError(t, err)
				require.Equal(t, want, segmentsJSON(t, got))
				require.Empty(t, got.stale, "no record is left inside a roll-up")
				objs, err := cb.B.List(ctx, "i1/binlogs/rollup/")
				require.NoError(t, err)
				require.Len(t, objs, 2)
			}
		})
	}
}

func TestRollUpAuthenticated(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	kek := crypttest.KEK(t)
	st := &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true}
	smallArchive(t, st)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	_, err = st.RollUp(ctx, ix)
	require.NoError(t, err)
	reader := &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true}
	got, err := reader.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, got.Segments, 215)
	for _, seg := range got.Segments[:2] {
		_, err := reader.ReadSegment(ctx, &seg)
		require.NoError(t, err, "the records in a roll-up keep their MACs")
	}

	key := got.Rollups[0].Key
	orig := get(t, b, key)
	replace := func(data []byte) {
		require.NoError(t, b.Delete(ctx, key))
		require.NoError(t, b.Put(ctx, key, bytes.NewReader(data), int64(len(data))))
	}
	var r Rollup
	require.NoError(t, json.Unmarshal(orig, &r))

	// Altered records with a matching checksum but the old MAC.
	r2 := r
	r2.Segments = append([]Segment(nil), r.Segments...)
	r2.Segments[3].LastGTID = "0-1-999999"
	r2.SHA256, _ = rollupSum(r2.Segments)
	data, _ := json.Marshal(&r2)
	replace(data)
	_, err = reader.ReadIndex(ctx)
	require.ErrorIs(t, err, ErrUnauthenticated)

	// Planted without a MAC: refused on an encrypted instance unless allowed.
	r2.KeyRef, r2.MAC = "", nil
	data, _ = json.Marshal(&r2)
	replace(data)
	_, err = reader.ReadIndex(ctx)
	require.ErrorIs(t, err, ErrUnauthenticated)
	lax := &Store{B: b, Instance: "i1", Keys: reader.Keys, Encrypt: true, AllowUnencrypted: true}
	_, err = lax.ReadIndex(ctx)
	require.NoError(t, err)
	replace(orig)
	_, err = reader.ReadIndex(ctx)
	require.NoError(t, err)
}

func TestRollUpHostile(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &Store{B: b, Instance: "i1"}
	smallArchive(t, st)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	_, err = st.RollUp(ctx, ix)
	require.NoError(t, err)
	key := ix.Rollups[1].Key
	orig := get(t, b, key)
	var r Rollup
	require.NoError(t, json.Unmarshal(orig, &r))
	plant := func(k string, v any) {
		t.Helper()
		data, ok := v.([]byte)
		if !ok {
			data, _ = json.Marshal(v)
		}
		_ = b.Delete(ctx, k)
		require.NoError(t, b.Put(ctx, k, bytes.NewReader(data), int64(len(data))))
	}
	saved := map[string][]byte{}
	for _, rr := range ix.Rollups {
		saved[rr.Key] = get(t, b, rr.Key)
	}
	cases := map[string]func(){
		"bad name": func() { plant("i1/binlogs/rollup/x.json", orig) },
		"range of another name": func() {
			plant(st.rollupKey(r.FirstSeq, r.LastSeq+1), orig)
		},
		"hole in the range": func() {
			c := r
			c.Segments = append(append([]Segment(nil), r.Segments[:5]...), r.Segments[6:]...)
			c.LastSeq--
			c.SHA256, _ = rollupSum(c.Segments)
			plant(st.rollupKey(c.FirstSeq, c.LastSeq), c)
		},
		"hostile file name in an entry": func() {
			c := r
			c.Segments = append([]Segment(nil), r.Segments...)
			c.Segments[0].File = "../../../etc.000001"
			c.SHA256, _ = rollupSum(c.Segments)
			plant(key, c)
		},
		"checksum": func() {
			c := r
			c.Segments = append([]Segment(nil), r.Segments...)
			c.Segments[0].End++
			c.Segments[0].RawSize++
			plant(key, c)
		},
		"too large": func() { plant(key, append(bytes.Repeat([]byte(" "), maxRollupSize), orig...)) },
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			tamper()
			_, err := st.ReadIndex(ctx)
			require.ErrorIs(t, err, ErrCorrupt)
			objs, err := b.List(ctx, "i1/binlogs/rollup/")
			require.NoError(t, err)
			for _, o := range objs {
				require.NoError(t, b.Delete(ctx, o.Key))
			}
			for k, v := range saved {
				plant(k, v)
			}
			_, err = st.ReadIndex(ctx)
			require.NoError(t, err)
		})
	}
}

// TestPruneRolledUp prunes the two oldest files of a rolled-up archive,
// stopping after each deletion in turn: what remains is always a suffix
// of the archive, each segment once, none with a missing data object.
func TestPruneRolledUp(t *testing.T) {
	ctx := context.Background()
	mk := func() (*counting.Backend, *Store, *Index, *PruneSet) {
		cb := counting.New(memory.New())
		st := &Store{B: cb, Instance: "i1"}
		smallArchive(t, st)
		ix, err := st.ReadIndex(ctx)
		require.NoError(t, err)
		_, err = st.RollUp(ctx, ix)
		require.NoError(t, err)
		// A roll-up that stopped before deleting its records left one behind.
		seg := ix.Segments[3]
		b, _ := json.Marshal(&seg)
		require.NoError(t, cb.Put(ctx, st.indexKey(seg.Seq), bytes.NewReader(b), int64(len(b))))
		ix, err = st.ReadIndex(ctx)
		require.NoError(t, err)
		p := &PruneSet{Segments: ix.Segments[:80], Rollups: []string{ix.Rollups[0].Key, ix.Rollups[1].Key}}
		for _, seg := range ix.Segments[:80] {
			p.Data = append(p.Data, st.segmentDataKey(&seg))
		}
		return cb, st, ix, p
	}
	cb, st, _, p := mk()
	cb.Reset()
	require.NoError(t, st.Prune(ctx, p, nil))
	total := cb.Counts().Delete
	assert.Equal(t, 2+1+80, total, "the roll-ups, the record left behind and the data objects: %s", cb.Counts())
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 135)
	assert.Equal(t, uint64(81), ix.Segments[0].Seq)
	objs, _ := cb.B.List(ctx, "i1/binlogs/index/")
	assert.Len(t, objs, 15)

	for n := 1; n < total; n++ {
		cb, st, _, p := mk()
		cb.FailAfter(n)
		require.ErrorIs(t, st.Prune(ctx, p, nil), counting.ErrInjected)
		cb.FailAfter(0)
		ix, err := st.ReadIndex(ctx)
		require.NoError(t, err, "after %d deletes", n)
		assert.Empty(t, ix.Missing, "after %d deletes", n)
		for _, seg := range ix.Segments {
			_, err := cb.B.Stat(ctx, st.segmentDataKey(&seg))
			require.NoError(t, err, "after %d deletes: segment %d has its data", n, seg.Seq)
		}
		for i := 1; i < len(ix.Segments); i++ {
			require.Equal(t, ix.Segments[i-1].Seq+1, ix.Segments[i].Seq, "after %d deletes: a suffix, each segment once", n)
		}
		assert.Equal(t, uint64(215), ix.Last().Seq)
	}
}

// TestOrphanSweepBounded: a run's sweep lists only the pages of the
// newest roll-up and the tail, and removes nothing a roll-up names; an
// older page is swept in turn, reading the roll-ups over it.
func TestOrphanSweepBounded(t *testing.T) {
	ctx := context.Background()
	cb := counting.New(memory.New())
	st := &Store{B: cb, Instance: "i1"}
	_, err := Synthetic{Segments: 3500, PerFile: 1300, SegmentEvents: 16, Start: synthStart}.Generate(ctx, st)
	require.NoError(t, err)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	_, err = st.RollUp(ctx, ix)
	require.NoError(t, err)
	// Orphans: a loser of an overlap in an old page, and one in the tail's.
	old, old2, tail := "i1/binlogs/data/000000000500-deadbeef.zst", "i1/binlogs/data/000000001100-deadbeef.zst", "i1/binlogs/data/000000003400-deadbeef.zst"
	for _, k := range []string{old, old2, tail} {
		require.NoError(t, cb.Put(ctx, k, bytes.NewReader([]byte("x")), 1))
	}

	cb.Reset()
	ix, err = st.ReadTail(ctx)
	require.NoError(t, err)
	require.NoError(t, st.RemoveOrphans(ctx, ix))
	c := cb.Counts()
	assert.Equal(t, 1, c.Delete, c.String())
	assert.LessOrEqual(t, c.List, 4+1+3, "listings of roll-ups, records, gaps, packs, the tail's data and 3 pages: %s", c)
	_, err = cb.B.Stat(ctx, tail)
	assert.Error(t, err, "the tail's orphan is removed")
	_, err = cb.B.Stat(ctx, old)
	assert.NoError(t, err, "an old page is not listed at every run")

	// Pages that begin before the newest roll-up (segments 1301-2600): 0
	// and 1; the time picks page 0, then page 1.
	require.NoError(t, st.SweepOrphanPage(ctx, ix, time.Unix(0, 0), time.Minute))
	_, err = cb.B.Stat(ctx, old)
	assert.Error(t, err, "the old page's orphan is removed")
	_, err = cb.B.Stat(ctx, old2)
	assert.NoError(t, err)
	require.NoError(t, st.SweepOrphanPage(ctx, ix, time.Unix(60, 0), time.Minute))
	_, err = cb.B.Stat(ctx, old2)
	assert.Error(t, err, "the page the newest roll-up begins in is swept too")
	full, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, full.Segments, 3500)
	for _, seg := range full.Segments {
		_, err := cb.B.Stat(ctx, st.segmentDataKey(&seg))
		require.NoError(t, err, "segment %d keeps its data", seg.Seq)
	}
	for _, at := range []int64{1, 2, 3} {
		require.NoError(t, st.SweepOrphanPage(ctx, ix, time.Unix(at*60, 0), time.Minute))
	}
	data, err := st.ListData(ctx)
	require.NoError(t, err)
	assert.Len(t, data, 3500, "no segment's data is removed by any page")
}

// TestPlantedRollupNameDeletesNothing: a roll-up planted under a name that
// claims records no genuine roll-up holds is not read by a resume
// (ReadTail reads the newest only), and its records are skipped there but
// never deleted; a full read refuses it.
func TestPlantedRollupNameDeletesNothing(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &Store{B: b, Instance: "i1"}
	smallArchive(t, st)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	// File 1 keeps its records: one of its data objects is missing.
	require.NoError(t, b.Delete(ctx, st.segmentDataKey(&ix.Segments[20])))
	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	n, err := st.RollUp(ctx, ix)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	planted := st.rollupKey(1, 5)
	require.NoError(t, b.Put(ctx, planted, bytes.NewReader([]byte("{}")), 2))

	tail, err := st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.RollUp(ctx, tail)
	require.NoError(t, err)
	for seq := uint64(1); seq <= 5; seq++ {
		_, err := b.Stat(ctx, st.indexKey(seq))
		require.NoError(t, err, "record %d is still there", seq)
	}
	_, err = st.ReadIndex(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), planted)
}
