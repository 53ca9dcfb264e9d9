package retention_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/retention"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

var t0 = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// sg is an index record: segment seq of file from start to end, encrypted
// with data key ref.
func sg(seq uint64, file string, start, end uint32, ref string) binlog.Segment {
	return binlog.Segment{Seq: seq, File: file, Start: start, End: end, KeyRef: ref,
		StoredSize: int64(end - start), FirstTime: t0.Add(time.Duration(seq) * time.Minute), LastTime: t0.Add(time.Duration(seq)*time.Minute + 30*time.Second),
		DataKey: fmt.Sprintf("data/%012d-%s.zst", seq, ref)}
}

// at is a backup whose consistent point is file:pos.
func bk(id, file string, pos uint64) *manifest.Manifest {
	return &manifest.Manifest{BackupID: id, Instance: instance, Type: manifest.TypeFull, BinlogFile: file, BinlogPos: pos,
		ConsistentAt: t0, StartTime: t0, EndTime: t0}
}

// dataOf returns the data objects of an index (as a store names them).
func dataOf(ix *binlog.Index) []binlog.DataObject {
	var out []binlog.DataObject
	for _, s := range ix.Segments {
		out = append(out, binlog.DataObject{Key: instance + "/binlogs/" + s.DataKey, Seq: s.Seq, Size: s.StoredSize})
	}
	return out
}

// archive is a fixture: two runs of one server (bin.*), a gap where the
// server was replaced, and a run of the new one (db-bin.*).
//
//	seq 1  bin.000001     4-100  r1
//	seq 2  bin.000001   100-200  r1
//	seq 3  bin.000002     4-150  r1
//	seq 4  bin.000002   150-300  r2   (the archiver restarted: a new data key)
//	seq 5  bin.000003     4-120  r2
//	gap before 6: server identity changed
//	seq 6  db-bin.000001  4-80   r3
//	seq 7  db-bin.000001 80-160  r3
func archive() *binlog.Index {
	return &binlog.Index{
		Segments: []binlog.Segment{
			sg(1, "bin.000001", 4, 100, "r1"), sg(2, "bin.000001", 100, 200, "r1"), sg(3, "bin.000002", 4, 150, "r1"),
			sg(4, "bin.000002", 150, 300, "r2"), sg(5, "bin.000003", 4, 120, "r2"),
			sg(6, "db-bin.000001", 4, 80, "r3"), sg(7, "db-bin.000001", 80, 160, "r3"),
		},
		Gaps: []binlog.Gap{{BeforeSeq: 6, LastFile: "bin.000003", LastPos: 120, ResumeFile: "db-bin.000001", ResumePos: 4, Reason: "server identity changed"}},
	}
}

func TestPlanArchive(t *testing.T) {
	now := t0.Add(30 * 24 * time.Hour)
	allKeys := []binlog.KeyRefInfo{{Ref: "r1", Newest: t0}, {Ref: "r2", Newest: t0}, {Ref: "r3", Newest: t0}}
	withGap4 := func() *binlog.Index {
		ix := archive()
		ix.Gaps = append([]binlog.Gap{{BeforeSeq: 4, Reason: "binlog file bin.000002 was purged"}}, ix.Gaps...)
		return ix
	}
	tests := []struct {
		name     string
		retained []*manifest.Manifest
		ix       *binlog.Index
		data     []binlog.DataObject // nil: those of ix
		keys     []binlog.KeyRefInfo // nil: allKeys
		segs     []uint64            // pruned index records
		gaps     []uint64
		keyRefs  []string
		data2    []uint64 // data objects pruned, by seq (nil: those of segs)
		keepFrom uint64
		keepFor  string
		reason   string
	}{
		{name: "no retained backup keeps the archive whole", ix: archive(), reason: "no backup is retained"},
		{name: "retained backups without a consistent point anchor nothing", ix: archive(),
			retained: []*manifest.Manifest{bk("x", "", 0)}, reason: "no retained backup's consistent point is in the archive"},
		{name: "the oldest window starts at the first segment: nothing to prune", ix: archive(),
			retained: []*manifest.Manifest{bk("b1", "bin.000001", 150), bk("b3", "bin.000003", 50)},
			keepFrom: 1, keepFor: "b1", reason: "nothing to prune: kept from segment 1 (bin.000001:4)"},
		{name: "a window needs its binlog file from position 4", ix: archive(),
			retained: []*manifest.Manifest{bk("b3", "bin.000003", 50), bk("b2", "bin.000002", 200)},
			segs:     []uint64{1, 2}, keepFrom: 3, keepFor: "b2",
			reason: "kept from segment 3 (bin.000002:4): the recovery window of backup b2 (consistent point bin.000002:200) needs it"},
		{name: "a run's data key goes once all its segments are pruned", ix: archive(),
			retained: []*manifest.Manifest{bk("b3", "bin.000003", 50)},
			segs:     []uint64{1, 2, 3, 4}, keyRefs: []string{"r1"}, keepFrom: 5, keepFor: "b3"},
		{name: "the gap before the first kept segment stays, the older runs go", ix: archive(),
			retained: []*manifest.Manifest{bk("n1", "db-bin.000001", 100)},
			segs:     []uint64{1, 2, 3, 4, 5}, keyRefs: []string{"r1", "r2"}, keepFrom: 6, keepFor: "n1"},
		{name: "gap records before the first kept segment go", ix: withGap4(),
			retained: []*manifest.Manifest{bk("b3", "bin.000003", 50)},
			segs:     []uint64{1, 2, 3, 4}, gaps: []uint64{4}, keyRefs: []string{"r1"}, keepFrom: 5},
		{name: "a backup whose point is in a hole opens no window", ix: withGap4(),
			// bin.000002 from 150 on was purged before it was archived.
			retained: []*manifest.Manifest{bk("hole", "bin.000002", 200), bk("b3", "bin.000003", 50)},
			segs:     []uint64{1, 2, 3, 4}, gaps: []uint64{4}, keyRefs: []string{"r1"}, keepFrom: 5, keepFor: "b3"},
		{name: "only backups in holes: nothing is pruned", ix: withGap4(),
			retained: []*manifest.Manifest{bk("hole", "bin.000002", 200)},
			reason:   "no retained backup's consistent point is in the archive"},
		{name: "an archive behind the backup keeps the start of its file", ix: archive(),
			retained: []*manifest.Manifest{bk("ahead", "db-bin.000001", 5000)},
			segs:     []uint64{1, 2, 3, 4, 5}, keyRefs: []string{"r1", "r2"}, keepFrom: 6, keepFor: "ahead"},
		{name: "a backup in a file not archived yet anchors nothing", ix: archive(),
			retained: []*manifest.Manifest{bk("later", "db-bin.000002", 50)},
			reason:   "no retained backup's consistent point is in the archive"},
		{name: "a file name reused after a gap keeps the oldest run holding it", ix: &binlog.Index{
			Segments: []binlog.Segment{sg(1, "bin.000001", 4, 100, ""), sg(2, "bin.000002", 4, 100, ""),
				sg(3, "bin.000001", 4, 100, ""), sg(4, "bin.000001", 100, 200, "")},
			Gaps: []binlog.Gap{{BeforeSeq: 3, Reason: "binlogs were reset"}}},
			retained: []*manifest.Manifest{bk("after-reset", "bin.000001", 50)},
			keys:     []binlog.KeyRefInfo{}, keepFrom: 1, reason: "nothing to prune"},
		{name: "a file name reused after a gap: any run that holds the point anchors", ix: &binlog.Index{
			Segments: []binlog.Segment{sg(1, "bin.000001", 4, 40, ""), sg(2, "bin.000001", 4, 100, ""),
				sg(3, "bin.000001", 100, 200, ""), sg(4, "bin.000002", 4, 50, "")},
			Gaps: []binlog.Gap{{BeforeSeq: 2, Reason: "binlogs were reset"}}},
			retained: []*manifest.Manifest{bk("old-server", "bin.000001", 150), bk("new", "bin.000002", 10)},
			keys:     []binlog.KeyRefInfo{}, segs: []uint64{1}, gaps: nil, keepFrom: 2, keepFor: "old-server"},
		{name: "unreferenced data below the first kept segment goes, above it stays", ix: archive(),
			retained: []*manifest.Manifest{bk("b3", "bin.000003", 50)},
			data: append(dataOf(archive()),
				binlog.DataObject{Key: instance + "/binlogs/data/000000000002-loser.zst", Seq: 2},
				binlog.DataObject{Key: instance + "/binlogs/data/000000000008-inflight.zst", Seq: 8}),
			segs: []uint64{1, 2, 3, 4}, keyRefs: []string{"r1"}, data2: []uint64{1, 2, 2, 3, 4}, keepFrom: 5},
		{name: "leftovers of an interrupted prune go", ix: &binlog.Index{Segments: archive().Segments[4:]},
			retained: []*manifest.Manifest{bk("b3", "bin.000003", 50)},
			data:     dataOf(archive()),
			keys: []binlog.KeyRefInfo{{Ref: "r1", Newest: t0}, {Ref: "r2", Newest: t0}, {Ref: "r3", Newest: t0},
				{Ref: "young", Newest: now.Add(-time.Hour)}, {Ref: "unknown-age"}},
			keyRefs: []string{"r1"}, data2: []uint64{1, 2, 3, 4}, keepFrom: 5,
			reason: "kept from segment 5"},
		{name: "with nothing anchored, old unused keys stay too", ix: archive(),
			keys:   append(slices.Clone(allKeys), binlog.KeyRefInfo{Ref: "old", Newest: t0}),
			reason: "no backup is retained"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, keys := tc.data, tc.keys
			if data == nil {
				data = dataOf(tc.ix)
			}
			if keys == nil {
				keys = allKeys
			}
			p, err := retention.PlanArchive(tc.retained, tc.ix, data, keys, now)
			require.NoError(t, err)
			var segs []uint64
			var bytes int64
			for _, s := range p.Prune.Segments {
				segs = append(segs, s.Seq)
				bytes += s.StoredSize
			}
			assert.Equal(t, tc.segs, segs, "index records")
			assert.Equal(t, tc.gaps, p.Prune.Gaps, "gap records")
			assert.Equal(t, tc.keyRefs, p.Prune.KeyRefs, "data keys")
			wantData := tc.data2
			if wantData == nil {
				wantData = tc.segs
			}
			var gotData []uint64
			for _, k := range p.Prune.Data {
				d := slices.IndexFunc(data, func(d binlog.DataObject) bool { return d.Key == k })
				require.GreaterOrEqual(t, d, 0, k)
				gotData = append(gotData, data[d].Seq)
			}
			slices.Sort(gotData)
			assert.Equal(t, wantData, gotData, "data objects")
			s := p.Summary
			assert.Equal(t, len(tc.segs), s.Segments)
			assert.Equal(t, bytes, s.StoredBytes)
			assert.Equal(t, len(tc.gaps), s.Gaps)
			assert.Equal(t, len(wantData), s.DataObjects)
			assert.Equal(t, tc.keepFrom, s.KeepFrom)
			if tc.keepFor != "" {
				assert.Equal(t, tc.keepFor, s.KeepFor)
			}
			assert.Contains(t, s.Reason, tc.reason)
			if len(tc.segs) > 0 {
				first, last := p.Prune.Segments[0], p.Prune.Segments[len(p.Prune.Segments)-1]
				assert.Equal(t, fmt.Sprintf("%s:%d", first.File, first.Start), s.From)
				assert.Equal(t, fmt.Sprintf("%s:%d", last.File, last.End), s.To)
				assert.Equal(t, first.FirstTime, s.FromTime)
				assert.Equal(t, last.LastTime, s.ToTime)
			}
			checkWindowsKept(t, tc.retained, tc.ix, &p.Prune)
		})
	}
}

func TestPlanArchiveErrors(t *testing.T) {
	_, err := retention.PlanArchive(nil, nil, nil, nil, t0)
	assert.ErrorContains(t, err, "nil index")
	ix := &binlog.Index{Segments: []binlog.Segment{sg(2, "bin.000001", 4, 10, ""), sg(1, "bin.000001", 10, 20, "")}}
	_, err = retention.PlanArchive(nil, ix, nil, nil, t0)
	assert.ErrorContains(t, err, "not in ascending order")
}

// after returns the index that remains once p is deleted.
func after(ix *binlog.Index, p *binlog.PruneSet) *binlog.Index {
	out := &binlog.Index{}
	for _, s := range ix.Segments {
		if !slices.ContainsFunc(p.Segments, func(x binlog.Segment) bool { return x.Seq == s.Seq }) {
			out.Segments = append(out.Segments, s)
		}
	}
	for _, g := range ix.Gaps {
		if !slices.Contains(p.Gaps, g.BeforeSeq) {
			out.Gaps = append(out.Gaps, g)
		}
	}
	return out
}

// checkWindowsKept checks that pruning p changes neither the recovery
// windows of the retained backups nor the segments any of them replays
// from, and that every remaining segment's key is kept.
func checkWindowsKept(t *testing.T, retained []*manifest.Manifest, ix *binlog.Index, p *binlog.PruneSet) {
	t.Helper()
	rest := after(ix, p)
	assert.Equal(t, binlog.Windows(retained, ix), binlog.Windows(retained, rest), "recovery windows of the retained backups")
	for _, b := range retained {
		if b.BinlogFile == "" {
			continue
		}
		want, werr := ix.Covering(b.BinlogFile, uint32(b.BinlogPos))
		got, gerr := rest.Covering(b.BinlogFile, uint32(b.BinlogPos))
		if werr == nil {
			assert.NoError(t, gerr, "backup %s", b.BackupID)
			assert.Equal(t, want, got, "segments backup %s replays", b.BackupID)
		}
	}
	for _, s := range rest.Segments {
		assert.NotContains(t, p.KeyRefs, s.KeyRef, "segment %d keeps its key", s.Seq)
	}
}

// TestPlanArchiveRandom checks, on random archives (rotations, gaps,
// restarts) and random sets of retained backups, that a prune never changes
// a retained backup's recovery window and that what it deletes is exactly
// what lies before the oldest segment a retained backup needs.
func TestPlanArchiveRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	pruning := 0
	for iter := range 300 {
		ix := &binlog.Index{}
		file, pos, server := 1, uint32(4), "bin"
		ref := 0
		for seq := uint64(1); seq <= uint64(1+rng.IntN(30)); seq++ {
			switch r := rng.IntN(10); {
			case seq > 1 && r == 0: // a gap: a new server, sometimes reusing names
				ix.Gaps = append(ix.Gaps, binlog.Gap{BeforeSeq: seq, Reason: "identity changed"})
				if rng.IntN(2) == 0 {
					server = fmt.Sprintf("srv%d", seq)
				}
				file, pos = 1, 4
				ref++
			case seq > 1 && r <= 3: // rotation
				file, pos = file+1, 4
			case r == 4:
				ref++ // an archiver restart
			}
			end := pos + uint32(1+rng.IntN(100))
			ix.Segments = append(ix.Segments, sg(seq, fmt.Sprintf("%s.%06d", server, file), pos, end, fmt.Sprintf("r%d", ref)))
			pos = end
		}
		var retained []*manifest.Manifest
		for i := range rng.IntN(4) {
			s := ix.Segments[rng.IntN(len(ix.Segments))]
			p := uint64(s.Start + uint32(rng.IntN(int(s.End-s.Start)+1)))
			switch rng.IntN(6) {
			case 0:
				p += 10000 // ahead of the archive in that file
			case 1:
				s.File = "other.000001" // never archived
			}
			retained = append(retained, bk(fmt.Sprintf("b%d", i), s.File, p))
		}
		var keys []binlog.KeyRefInfo
		for r := 0; r <= ref; r++ {
			keys = append(keys, binlog.KeyRefInfo{Ref: fmt.Sprintf("r%d", r), Newest: t0})
		}
		p, err := retention.PlanArchive(retained, ix, dataOf(ix), keys, t0.Add(time.Hour))
		require.NoError(t, err)
		checkWindowsKept(t, retained, ix, &p.Prune)
		// What is pruned is a prefix of the archive, and nothing is pruned
		// without an anchor.
		for i, s := range p.Prune.Segments {
			assert.Equal(t, ix.Segments[i].Seq, s.Seq)
		}
		if p.Summary.KeepFrom == 0 {
			assert.True(t, p.Summary.Empty())
		} else {
			assert.Len(t, p.Prune.Segments, int(p.Summary.KeepFrom-1))
		}
		if len(p.Prune.Segments) > 0 {
			pruning++
		}
		if t.Failed() {
			t.Fatalf("iteration %d: index %+v, retained %+v", iter, ix, retained)
		}
	}
	assert.Greater(t, pruning, 60, "iterations that prune something")
}

// crashAfter fails every Delete after the first n; n < 0: never.
type crashAfter struct {
	storage.Backend
	n int
}

func (c *crashAfter) Delete(ctx context.Context, key string) error {
	if c.n == 0 {
		return errCrash
	}
	c.n--
	return c.Backend.Delete(ctx, key)
}

// writeArchive writes, through real stores, three encrypted archive runs
// (each with its own data key) and returns a key ring that reads them.
func writeArchive(t *testing.T, b storage.Backend) *binlog.Store {
	t.Helper()
	ctx := context.Background()
	ring := crypttest.Ring(t, crypttest.KEK(t))
	runs := [][]binlog.Segment{
		{sg(1, "bin.000001", 4, 100, ""), sg(2, "bin.000001", 100, 200, ""), sg(3, "bin.000002", 4, 150, "")},
		{sg(4, "bin.000002", 150, 300, ""), sg(5, "bin.000003", 4, 120, "")},
		{sg(6, "bin.000003", 120, 200, ""), sg(7, "bin.000004", 4, 50, "")},
	}
	for _, run := range runs {
		st := &binlog.Store{B: b, Instance: instance, Keys: ring, Encrypt: true}
		for _, seg := range run {
			seg.DataKey, seg.KeyRef = "", ""
			require.NoError(t, st.WriteSegment(ctx, &seg, make([]byte, seg.End-seg.Start)))
		}
	}
	return &binlog.Store{B: b, Instance: instance, Keys: ring}
}

// checkArchiveReadable fails unless every index record's data object and
// data key exist and decrypt.
func checkArchiveReadable(t *testing.T, st *binlog.Store) *binlog.Index {
	t.Helper()
	ix, err := st.ReadIndex(context.Background())
	require.NoError(t, err)
	for i := range ix.Segments {
		_, err := st.ReadSegment(context.Background(), &ix.Segments[i])
		require.NoError(t, err, "segment %d", ix.Segments[i].Seq)
	}
	return ix
}

func TestPruneArchive(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := writeArchive(t, b)
	retained := []*manifest.Manifest{bk("b4", "bin.000004", 20), bk("b3", "bin.000003", 150)}
	before := checkArchiveReadable(t, st)
	refs, err := repo.ListBinlogKeyRefs(ctx, b, instance)
	require.NoError(t, err)
	require.Len(t, refs, 3)

	// A dry run deletes nothing and says what it would.
	all := keys(t, b, "")
	dry, err := retention.PruneArchive(ctx, st, retained, time.Now(), true, nil)
	require.NoError(t, err)
	assert.Equal(t, all, keys(t, b, ""))
	assert.Equal(t, 4, dry.Segments)
	assert.Equal(t, uint64(5), dry.KeepFrom)
	assert.Equal(t, "b3", dry.KeepFor)
	assert.Equal(t, []string{before.Segments[0].KeyRef}, dry.KeyRefs, "the first run's key")
	assert.Equal(t, "bin.000001:4", dry.From)
	assert.Equal(t, "bin.000002:300", dry.To)

	n := 0
	res, err := retention.PruneArchive(ctx, st, retained, time.Now(), false, func(done int) { n = done })
	require.NoError(t, err)
	assert.Equal(t, dry, res)
	assert.Equal(t, 4+1+4, n, "index records, a key, data objects")
	ix := checkArchiveReadable(t, st)
	assert.Equal(t, before.Segments[4:], ix.Segments)
	assert.Equal(t, binlog.Windows(retained, before), binlog.Windows(retained, ix))
	data, err := st.ListData(ctx)
	require.NoError(t, err)
	assert.Len(t, data, 3)
	left, err := repo.ListBinlogKeyRefs(ctx, b, instance)
	require.NoError(t, err)
	assert.NotContains(t, left, before.Segments[0].KeyRef)
	assert.Len(t, left, 2)

	// Again: nothing more to do.
	res, err = retention.PruneArchive(ctx, st, retained, time.Now(), false, nil)
	require.NoError(t, err)
	assert.True(t, res.Empty(), "%+v", res)
	assert.Contains(t, res.Reason, "nothing to prune")
}

// TestPruneArchiveCrash interrupts the prune at every deletion: no index
// record ever points to a missing data object or key, the retained
// backups' windows are intact, and a later prune removes the leftovers.
func TestPruneArchiveCrash(t *testing.T) {
	ctx := context.Background()
	retained := []*manifest.Manifest{bk("b3", "bin.000003", 150)}
	clean := memory.New()
	writeArchive(t, clean)
	cst := &binlog.Store{B: clean, Instance: instance}
	_, err := retention.PruneArchive(ctx, cst, retained, time.Now(), false, nil)
	require.NoError(t, err)
	want := kinds(t, clean)
	require.Equal(t, map[string]int{"index": 3, "data": 3, "keys": 2}, want)
	const total = 4 + 1 + 4
	for n := 0; n < total; n++ {
		cb := &crashAfter{Backend: memory.New(), n: -1}
		st := writeArchive(t, cb)
		st.B = cb
		before, err := st.ReadIndex(ctx)
		require.NoError(t, err)
		cb.n = n
		_, err = retention.PruneArchive(ctx, st, retained, time.Now(), false, nil)
		require.ErrorIs(t, err, errCrash, "crash after %d deletes", n)
		cb.n = -1
		ix := checkArchiveReadable(t, st)
		assert.Equal(t, binlog.Windows(retained, before), binlog.Windows(retained, ix), "crash after %d deletes", n)

		// A later prune finishes the work, leftovers included.
		_, err = retention.PruneArchive(ctx, st, retained, time.Now().Add(retention.ArchiveKeyGrace+time.Hour), false, nil)
		require.NoError(t, err)
		checkArchiveReadable(t, st)
		assert.Equal(t, want, kinds(t, cb), "crash after %d deletes, then a prune", n)
	}
}

// kinds counts the archive's objects by kind (index, data, keys, gaps).
func kinds(t *testing.T, b storage.Backend) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, k := range keys(t, b, instance+"/binlogs/") {
		kind, _, _ := strings.Cut(strings.TrimPrefix(k, instance+"/binlogs/"), "/")
		out[kind]++
	}
	return out
}

func TestPruneSetRefusesForeignObjects(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &binlog.Store{B: b, Instance: instance}
	for _, p := range []binlog.PruneSet{
		{Data: []string{instance + "/backups/b1/manifest.json"}},
		{Data: []string{"db2/binlogs/data/000000000001.zst"}},
		{Data: []string{instance + "/binlogs/data/sub/000000000001.zst"}},
		{KeyRefs: []string{"../backups"}},
		{Segments: []binlog.Segment{{Seq: 2}, {Seq: 1}}},
	} {
		assert.Error(t, st.Prune(ctx, &p, nil), "%+v", p)
	}
}

// TestPruneArchiveRolledUp prunes a rolled-up archive: whole roll-ups go,
// the kept part reads back the same, and a point inside a roll-up keeps
// the whole roll-up.
func TestPruneArchiveRolledUp(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &binlog.Store{B: b, Instance: instance}
	_, err := binlog.Synthetic{Segments: 130, PerFile: 30, SegmentEvents: 40, Start: t0}.Generate(ctx, st)
	require.NoError(t, err)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	n, err := st.RollUp(ctx, ix)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	before, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	// The backup's point is in binlog.000003 (segments 61-90).
	retained := []*manifest.Manifest{bk("b3", "binlog.000003", 4+15*40)}
	plan, err := retention.PlanArchive(retained, before, dataOf(before), nil, time.Now())
	require.NoError(t, err)
	assert.Equal(t, uint64(61), plan.Summary.KeepFrom)
	assert.Equal(t, []string{before.Rollups[0].Key, before.Rollups[1].Key}, plan.Prune.Rollups)

	res, err := retention.PruneArchive(ctx, st, retained, time.Now(), false, nil)
	require.NoError(t, err)
	assert.Equal(t, 60, res.Segments)
	after, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Equal(t, before.Segments[60:], after.Segments)
	assert.Len(t, after.Rollups, 2)
	assert.Equal(t, binlog.Windows(retained, before), binlog.Windows(retained, after))
	data, err := st.ListData(ctx)
	require.NoError(t, err)
	assert.Len(t, data, 70)
}

// Packs are pruned whole with their roll-ups, and what is kept still reads
// byte for byte.
func TestPruneArchiveCompacted(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	st := &binlog.Store{B: b, Instance: instance, PackSize: 1500}
	_, err := binlog.Synthetic{Segments: 130, PerFile: 30, SegmentEvents: 200, Start: t0, Distinct: true}.Generate(ctx, st)
	require.NoError(t, err)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	_, err = st.RollUp(ctx, ix)
	require.NoError(t, err)
	ix, err = st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix)
	require.NoError(t, err)
	before, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Greater(t, len(before.Packs), 8)
	want := map[uint64][]byte{}
	for i := range before.Segments {
		raw, err := st.ReadSegment(ctx, &before.Segments[i])
		require.NoError(t, err)
		want[before.Segments[i].Seq] = raw
	}
	var kept []string
	for _, p := range before.Packs {
		if p.FirstSeq >= 61 {
			kept = append(kept, p.Key)
		}
	}
	retained := []*manifest.Manifest{bk("b3", "binlog.000003", 4+15*200)}
	plan, err := retention.PlanArchive(retained, before, nil, nil, time.Now())
	require.NoError(t, err)
	assert.Equal(t, len(before.Packs)-len(kept), plan.Summary.Packs)

	res, err := retention.PruneArchive(ctx, st, retained, time.Now(), false, nil)
	require.NoError(t, err)
	assert.Equal(t, 60, res.Segments)
	after, err := (&binlog.Store{B: b, Instance: instance, CheckAllData: true}).ReadIndex(ctx)
	require.NoError(t, err)
	assert.Empty(t, after.Missing)
	var left []string
	for _, p := range after.Packs {
		left = append(left, p.Key)
	}
	assert.Equal(t, kept, left, "the packs of the pruned files are gone, the others kept")
	assert.Equal(t, binlog.Windows(retained, before), binlog.Windows(retained, after))
	for i := range after.Segments {
		raw, err := st.ReadSegment(ctx, &after.Segments[i])
		require.NoError(t, err)
		assert.Equal(t, want[after.Segments[i].Seq], raw)
	}
	require.Len(t, after.Segments, 70)
}
