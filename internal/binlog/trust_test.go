package binlog

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// putRecord stores raw JSON as the index record of seq.
func putRecord(t *testing.T, st *Store, seq uint64, rec map[string]any) {
	t.Helper()
	b, err := json.Marshal(rec)
	require.NoError(t, err)
	key := st.indexKey(seq)
	_ = st.B.Delete(context.Background(), key)
	require.NoError(t, st.B.Put(context.Background(), key, strings.NewReader(string(b)), int64(len(b))))
}

func recordOf(t *testing.T, st *Store, seq uint64) map[string]any {
	t.Helper()
	var rec map[string]any
	require.NoError(t, json.Unmarshal(get(t, st.B, st.indexKey(seq)), &rec))
	return rec
}

// Every name and size of an index record is checked before it is used: a
// record naming a path outside the rebuild directory, another object, or a
// huge allocation fails ReadIndex with ErrCorrupt naming the record.
func TestReadIndexRefusesHostileRecords(t *testing.T) {
	for name, mutate := range map[string]func(r map[string]any){
		"file traversal":      func(r map[string]any) { r["file"] = "../../../ESCAPED.000001" },
		"file absolute":       func(r map[string]any) { r["file"] = "/srv/ESCAPED.000001" },
		"file not a binlog":   func(r map[string]any) { r["file"] = "binlog" },
		"file with NUL":       func(r map[string]any) { r["file"] = "bin\x00log.000001" },
		"next traversal":      func(r map[string]any) { r["next"] = "../x.000002" },
		"data_key traversal":  func(r map[string]any) { r["data_key"] = "../../other/secret" },
		"data_key other seq":  func(r map[string]any) { r["data_key"] = "data/000000000009-abc.zst" },
		"key_ref traversal":   func(r map[string]any) { r["key_ref"] = "../../../etc" },
		"raw_size huge":       func(r map[string]any) { r["raw_size"] = int64(1) << 40; r["end"] = 4 },
		"raw_size mismatch":   func(r map[string]any) { r["raw_size"] = 7 },
		"raw_size negative":   func(r map[string]any) { r["raw_size"] = -1 },
		"stored_size huge":    func(r map[string]any) { r["stored_size"] = int64(1) << 40 },
		"start after end":     func(r map[string]any) { r["start"] = 900; r["end"] = 800 },
		"start in the header": func(r map[string]any) { r["start"] = 0 },
		"sha256 not hex":      func(r map[string]any) { r["sha256"] = "zz" },
		"seq of another name": func(r map[string]any) { r["seq"] = 2 },
		"mac without key_ref": func(r map[string]any) { r["mac"] = make([]byte, 32) },
		"not json":            nil,
	} {
		t.Run(name, func(t *testing.T) {
			st := &Store{B: memory.New(), Instance: "i1"}
			writeSegments(t, st, 1, 1)
			if mutate == nil {
				require.NoError(t, st.B.Delete(context.Background(), st.indexKey(1)))
				require.NoError(t, st.B.Put(context.Background(), st.indexKey(1), strings.NewReader(`{"seq":1,"fi`), 12))
			} else {
				rec := recordOf(t, st, 1)
				mutate(rec)
				putRecord(t, st, 1, rec)
			}
			_, err := st.ReadIndex(context.Background())
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Contains(t, err.Error(), st.indexKey(1), "the error names the object")
		})
	}
}

// Build never creates a file outside its directory, whatever the segment
// it is handed says (ReadIndex refuses such records already).
func TestBuildNeverWritesOutsideDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "rebuild")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	st := &Store{B: memory.New(), Instance: "i1"}
	seg := Segment{Seq: 1, File: "../../../ESCAPED.000001", Start: 4, End: 4}
	_, err := Build(context.Background(), st, []Segment{seg}, seg.File, 4, Target{File: seg.File, Pos: 4}, dir)
	require.ErrorIs(t, err, ErrCorrupt)
	_, serr := os.Stat(filepath.Join(root, "ESCAPED.000001"))
	assert.ErrorIs(t, serr, os.ErrNotExist, "nothing was written outside the rebuild directory")
}

// A segment whose data object is missing ends its run: the recovery window
// stops before it, and the hole shows as a gap naming the object.
func TestMissingDataObjectEndsWindow(t *testing.T) {
	ctx := context.Background()
	st := &Store{B: memory.New(), Instance: "i1"}
	writeSegments(t, st, 1, 3)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Runs(), 1)
	b := &manifest.Manifest{BackupID: "b1", BinlogFile: "binlog.000001", BinlogPos: 4, ConsistentAt: time.Unix(1, 0)}
	full := Windows([]*manifest.Manifest{b}, ix)
	require.Len(t, full, 1)
	assert.Equal(t, ix.Segments[2].End, full[0].ToPos)

	lost := st.segmentDataKey(&ix.Segments[1])
	require.NoError(t, st.B.Delete(ctx, lost))
	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 3, "the record is still listed (the archiver resumes after it)")
	require.Len(t, ix.Missing, 1)
	assert.Equal(t, uint64(2), ix.Missing[0].Seq)
	require.Len(t, ix.Gaps, 1)
	assert.Equal(t, lost, ix.Gaps[0].MissingData)
	assert.Contains(t, ix.Gaps[0].Reason, lost)
	runs := ix.Runs()
	require.Len(t, runs, 2)
	assert.Equal(t, uint64(1), runs[0][0].Seq)
	assert.Equal(t, uint64(3), runs[1][0].Seq)
	w := Windows([]*manifest.Manifest{b}, ix)
	require.Len(t, w, 1)
	assert.Equal(t, ix.Segments[0].End, w[0].ToPos, "the window ends where the data does")
	assert.Contains(t, DescribeWindows(w, ix.Gaps), lost)
	_, err = ix.Covering("binlog.000001", ix.Segments[2].Start)
	assert.ErrorIs(t, err, ErrNotInArchive)
	_, err = st.ReadSegment(ctx, &ix.Segments[1])
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), lost)
}

// On an instance with encryption enabled, a record planted or altered by a
// writer of the bucket without the key is refused: an unencrypted one
// (ErrUnencrypted, unless AllowUnencrypted), one without a MAC (old
// records: only with AllowUnencrypted) and one whose MAC does not match
// (always).
func TestPlantedRecordsAreRefusedOnEncryptedInstance(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	kek := crypttest.KEK(t)
	writer := &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true}
	writeSegments(t, writer, 1, 2)
	// A bucket writer appends a plaintext segment of its own.
	ix, err := writer.ReadIndex(ctx)
	require.NoError(t, err)
	last := ix.Segments[1]
	ev := events(3)
	planted := &Segment{Seq: 3, File: "binlog.000001", Start: last.End, End: last.End + uint32(len(ev)), Events: 1}
	require.NoError(t, (&Store{B: b, Instance: "i1"}).WriteSegment(ctx, planted, ev))

	reader := func(allow bool) *Store {
		return &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true, AllowUnencrypted: allow}
	}
	ix, err = reader(false).ReadIndex(ctx)
	require.NoError(t, err)
	for i := range 2 {
		_, err := reader(false).ReadSegment(ctx, &ix.Segments[i])
		require.NoError(t, err, "authentic records are accepted")
	}
	_, err = reader(false).ReadSegment(ctx, &ix.Segments[2])
	require.ErrorIs(t, err, ErrUnencrypted)
	assert.Contains(t, err.Error(), "i1/binlogs/index/000000000003.json")
	assert.Contains(t, err.Error(), "--allow-unencrypted")
	_, err = reader(true).ReadSegment(ctx, &ix.Segments[2])
	require.NoError(t, err, "old unencrypted data with allow-unencrypted")

	// An authentic record altered (its GTID) no longer authenticates.
	altered := ix.Segments[1]
	altered.LastGTID = "0-1-999"
	for _, allow := range []bool{false, true} {
		err := reader(allow).Authenticate(ctx, &altered)
		require.ErrorIs(t, err, ErrUnauthenticated)
	}
	_, err = reader(true).ReadSegment(ctx, &altered)
	require.ErrorIs(t, err, ErrUnauthenticated)
	// A MAC copied from another record does not fit.
	copied := ix.Segments[0]
	copied.MAC = ix.Segments[1].MAC
	require.ErrorIs(t, reader(true).Authenticate(ctx, &copied), ErrUnauthenticated)
	// The archive copied to another instance's name does not fit there.
	for key, data := range allObjects(t, b) {
		if rest, ok := strings.CutPrefix(key, "i1/"); ok {
			require.NoError(t, b.Put(ctx, "i2/"+rest, strings.NewReader(string(data)), int64(len(data))))
		}
	}
	other := &Store{B: b, Instance: "i2", Keys: crypttest.Ring(t, kek), Encrypt: true}
	oix, err := other.ReadIndex(ctx)
	require.NoError(t, err)
	require.ErrorIs(t, other.Authenticate(ctx, &oix.Segments[0]), ErrUnauthenticated)

	// A record without a MAC (as older versions wrote): only with
	// allow-unencrypted.
	noMAC := ix.Segments[0]
	noMAC.MAC = nil
	require.ErrorIs(t, reader(false).Authenticate(ctx, &noMAC), ErrUnauthenticated)
	require.NoError(t, reader(true).Authenticate(ctx, &noMAC))
	// The MAC survives the record's JSON round trip (what ReadIndex reads).
	rec, err := DecodeSegment(get(t, b, writer.indexKey(1)))
	require.NoError(t, err)
	require.NoError(t, reader(false).Authenticate(ctx, rec))
}

// A retried write of a segment larger than an index record finds its own
// data object and succeeds (the comparison reads the whole object back).
func TestRetriedWriteOfALargeSegmentSucceeds(t *testing.T) {
	st := &Store{B: memory.New(), Instance: "i1"}
	ev := make([]byte, 300<<10)
	_, _ = rand.Read(ev) // incompressible
	seg := &Segment{Seq: 1, File: "binlog.000001", Start: 4, End: 4 + uint32(len(ev)), Events: 1}
	require.NoError(t, st.WriteSegment(context.Background(), seg, ev))
	require.Greater(t, seg.StoredSize, int64(maxRecordSize))
	again := *seg
	require.NoError(t, st.WriteSegment(context.Background(), &again, ev))
}

// A segment whose data object goes missing after its file was rolled up
// still ends its recovery window in the catalog's views (CheckAllData: ls,
// archive status, verify), while the archiver's bounded reads do not list
// data/ beyond the tail.
func TestMissingDataObjectInARolledUpFileEndsWindow(t *testing.T) {
	ctx := context.Background()
	st := &Store{B: memory.New(), Instance: "i1"}
	_, err := Synthetic{Segments: 9, PerFile: 3, SegmentEvents: 64, Start: time.Unix(1000, 0)}.Generate(ctx, st)
	require.NoError(t, err)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	n, err := st.RollUp(ctx, ix)
	require.NoError(t, err)
	require.Positive(t, n, "closed files are rolled up")
	b := &manifest.Manifest{BackupID: "b1", BinlogFile: "binlog.000001", BinlogPos: 4, ConsistentAt: time.Unix(1000, 0)}

	ix, err = st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 9)
	lost := st.segmentDataKey(&ix.Segments[1]) // in binlog.000001, rolled up
	require.NoError(t, st.B.Delete(ctx, lost))

	full := &Store{B: st.B, Instance: "i1", CheckAllData: true}
	ix, err = full.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Missing, 1, "the missing data object is found inside the roll-up")
	assert.Equal(t, lost, ix.Gaps[0].MissingData)
	w := Windows([]*manifest.Manifest{b}, ix)
	require.Len(t, w, 1)
	assert.Equal(t, "binlog.000001", w[0].ToFile)
	assert.Equal(t, ix.Segments[0].End, w[0].ToPos, "the window ends where the data does")

	bounded, err := st.ReadTail(ctx)
	require.NoError(t, err)
	assert.Empty(t, bounded.Missing, "resume does not list the data of rolled-up files")
}
