package binlog

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

const marker = "STRATA-MARKER-BINLOG-ROW-5e1c"

func events(n int) []byte {
	return bytes.Repeat([]byte(marker+" insert into t values (1, 'payload'); "), n)
}

func writeSegments(t *testing.T, st *Store, from uint64, n int) [][]byte {
	t.Helper()
	var out [][]byte
	pos := uint32(4)
	for i := range n {
		ev := events(10 + i)
		seg := &Segment{Seq: from + uint64(i), File: "binlog.000001", Start: pos, End: pos + uint32(len(ev)), Events: 1}
		require.NoError(t, st.WriteSegment(context.Background(), seg, ev))
		pos = seg.End
		out = append(out, ev)
	}
	return out
}

func allObjects(t *testing.T, b storage.Backend) map[string][]byte {
	t.Helper()
	objs, err := b.List(context.Background(), "")
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, o := range objs {
		out[o.Key] = get(t, b, o.Key)
	}
	return out
}

func get(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	st := &Store{B: b}
	data, err := st.getLimited(context.Background(), key, 1<<30)
	require.NoError(t, err)
	return data
}

func TestEncryptedSegmentsRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	kek := crypttest.KEK(t)
	st := &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true}
	want := writeSegments(t, st, 1, 3)

	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 3)
	ref := ix.Segments[0].KeyRef
	require.NotEmpty(t, ref, "the index record names the key")
	for _, s := range ix.Segments {
		assert.Equal(t, ref, s.KeyRef, "one data key per archive run")
	}
	// The wrapped data key is stored once, under the run's key ref.
	keys, err := repo.BinlogKeys(b, "i1", ref).List(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, kek.ID(), keys[0].KEKID)
	_, err = b.Stat(ctx, "i1/binlogs/keys/"+ref+"/"+repo.KeyObjectName(kek.ID()))
	require.NoError(t, err)

	// Nothing stored holds the events in the clear, and the recorded sha256
	// is that of the stored bytes.
	for key, data := range allObjects(t, b) {
		assert.NotContains(t, string(data), marker, key)
	}
	for _, s := range ix.Segments {
		stored := get(t, b, st.segmentDataKey(&s))
		assert.True(t, crypt.IsEncrypted(stored))
		assert.Equal(t, int64(len(stored)), s.StoredSize)
	}

	// A later run (another Store) with the key reads every segment back
	// byte for byte; so does the writing Store.
	for _, reader := range []*Store{st, {B: b, Instance: "i1", Keys: crypttest.Ring(t, crypttest.KEK(t), kek)}} {
		for i := range ix.Segments {
			got, err := reader.ReadSegment(ctx, &ix.Segments[i])
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want[i], got))
		}
	}

	// Without the key: a clear error naming the key ids.
	for _, reader := range []*Store{{B: b, Instance: "i1"}, {B: b, Instance: "i1", Keys: crypttest.Ring(t, crypttest.KEK(t))}} {
		_, err := reader.ReadSegment(ctx, &ix.Segments[0])
		require.ErrorIs(t, err, repo.ErrNoUsableKey)
		assert.Contains(t, err.Error(), kek.ID())
		assert.Contains(t, err.Error(), "binlog segment 1")
	}

	// A segment moved to another position, its record altered to match:
	// the record's MAC no longer matches (and the data would not decrypt
	// at another position either).
	moved := ix.Segments[1]
	moved.Seq = 2
	other := ix.Segments[0]
	other.StoredSize, other.SHA256 = moved.StoredSize, moved.SHA256
	k0, k1 := st.segmentDataKey(&ix.Segments[0]), st.segmentDataKey(&ix.Segments[1])
	require.NoError(t, b.Delete(ctx, k0))
	require.NoError(t, b.Put(ctx, k0, bytes.NewReader(get(t, b, k1)), moved.StoredSize))
	_, err = (&Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek)}).ReadSegment(ctx, &other)
	assert.ErrorIs(t, err, ErrUnauthenticated)
}

// A retried write of a segment (same run) stores the same bytes, so the
// store's idempotent put accepts it.
func TestEncryptedSegmentRewriteIsIdempotent(t *testing.T) {
	b := memory.New()
	st := &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, crypttest.KEK(t)), Encrypt: true}
	ev := events(5)
	seg := &Segment{Seq: 1, File: "binlog.000001", Start: 4, End: 4 + uint32(len(ev))}
	require.NoError(t, st.WriteSegment(context.Background(), seg, ev))
	first := get(t, b, st.segmentDataKey(seg))
	again := *seg
	require.NoError(t, st.WriteSegment(context.Background(), &again, ev))
	assert.Equal(t, first, get(t, b, st.segmentDataKey(&again)))
	assert.Equal(t, seg.SHA256, again.SHA256)
}

// An archive that was written unencrypted, then encrypted (or the other way
// round) reads back whole; each run has its own key.
func TestMixedArchive(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	kek := crypttest.KEK(t)
	plain := writeSegments(t, &Store{B: b, Instance: "i1"}, 1, 2)
	enc1 := writeSegments(t, &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true}, 3, 2)
	time.Sleep(time.Millisecond)
	enc2 := writeSegments(t, &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true}, 5, 1)
	want := append(append(plain, enc1...), enc2...)
	reader := &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek)}
	ix, err := reader.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 5)
	assert.Empty(t, ix.Segments[0].KeyRef)
	assert.NotEqual(t, ix.Segments[2].KeyRef, ix.Segments[4].KeyRef)
	refs, err := repo.ListBinlogKeyRefs(ctx, b, "i1")
	require.NoError(t, err)
	assert.Len(t, refs, 2)
	for i := range ix.Segments {
		got, err := reader.ReadSegment(ctx, &ix.Segments[i])
		require.NoError(t, err)
		assert.Equal(t, want[i], got)
	}
	// Encrypt without a keyring is refused with a message saying what to set.
	err = (&Store{B: b, Instance: "i1", Encrypt: true}).WriteSegment(ctx, &Segment{Seq: 9, File: "f", Start: 4, End: 5}, []byte("x"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "encryption.key_file")
}

// The archiver with an encrypting store reproduces the server's binlog
// files exactly after decryption, and stores none of the rows in the clear.
func TestEncryptedArchiveIsByteExact(t *testing.T) {
	srv, db := newSource(t)
	kek := crypttest.KEK(t)
	b := memory.New()
	st := &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek), Encrypt: true}
	writeRows(t, db, 1, 100)
	_, err := db.Exec("INSERT INTO a.t VALUES (1000, '" + marker + "')")
	require.NoError(t, err)
	_, err = Run(context.Background(), st, db, source(srv), Options{FlushInterval: 100 * time.Millisecond, RunFor: 1500 * time.Millisecond})
	require.NoError(t, err)

	for key, data := range allObjects(t, b) {
		require.False(t, strings.Contains(string(data), marker), "%s holds the row in the clear", key)
	}
	files := rebuildAll(t, &Store{B: b, Instance: "i1", Keys: crypttest.Ring(t, kek)})
	require.NotEmpty(t, files)
	found := false
	for name, got := range files {
		want, err := os.ReadFile(filepath.Join(srv.Datadir, name))
		require.NoError(t, err)
		if len(want) > 21 {
			want[21] &^= 0x01 // LOG_EVENT_BINLOG_IN_USE_F, see the archiver test
		}
		require.True(t, bytes.Equal(want, got), "%s: decrypted archive (%d bytes) == server file (%d bytes)", name, len(got), len(want))
		found = found || bytes.Contains(got, []byte(marker))
	}
	assert.True(t, found, "the marker row is in the decrypted archive")
}
