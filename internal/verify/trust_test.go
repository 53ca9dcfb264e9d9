package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/verify"
)

// overwrite replaces a backup's manifest with m as JSON, bypassing Encode's
// validation (a writer of the bucket, or a broken version).
func (f *fixture) overwrite(m *manifest.Manifest) string {
	f.t.Helper()
	data, err := json.Marshal(m)
	require.NoError(f.t, err)
	key := repo.ManifestKey(instance, m.BackupID)
	require.NoError(f.t, f.b.Delete(context.Background(), key))
	require.NoError(f.t, f.b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))))
	return key
}

func problemsOf(rep *verify.Report) string {
	var s []string
	for _, p := range rep.Problems {
		s = append(s, p.String()+" ["+p.Key+"]")
	}
	return strings.Join(s, "\n")
}

// Each of these broken backups used to pass verify; each is now a problem
// naming the object, and the intact backups are still verified.
func TestVerifyReportsBrokenManifests(t *testing.T) {
	for name, breakIt := range map[string]func(m *manifest.Manifest){
		"empty chunk list":        func(m *manifest.Manifest) { m.Chunks = []manifest.Chunk{} },
		"raw_size not the sum":    func(m *manifest.Manifest) { m.RawSize++ },
		"stored_size not the sum": func(m *manifest.Manifest) { m.StoredSize-- },
		"hostile chunk key":       func(m *manifest.Manifest) { m.Chunks[0].Key = "chunks/../../F2/manifest.json" },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.add("F", manifest.TypeFull, "", 0, 100, 0)
			m := f.add("B", manifest.TypeFull, "", 0, 100, 1)
			breakIt(m)
			key := f.overwrite(m)
			rep, err := verify.Backups(context.Background(), f.r, instance, nil, 2, nil)
			require.NoError(t, err)
			require.False(t, rep.OK())
			require.Len(t, rep.Problems, 1, problemsOf(rep))
			assert.Equal(t, "B", rep.Problems[0].BackupID)
			assert.Equal(t, key, rep.Problems[0].Key)
			assert.Contains(t, rep.Problems[0].What, "invalid manifest")
			assert.Equal(t, []string{"F"}, rep.Checked)
			// Asked for by id, too.
			rep, err = verify.Backups(context.Background(), f.r, instance, []string{"B"}, 2, nil)
			require.NoError(t, err)
			require.Len(t, rep.Problems, 1)
			// ls (ListBackups) fails naming the object.
			_, err = f.r.ListBackups(context.Background(), instance)
			require.ErrorIs(t, err, manifest.ErrInvalid)
			assert.Contains(t, err.Error(), key)
		})
	}
}

// A truncated manifest is reported, naming it.
func TestVerifyReportsTruncatedManifest(t *testing.T) {
	f := newFixture(t)
	f.add("B", manifest.TypeFull, "", 0, 100, 1)
	key := repo.ManifestKey(instance, "B")
	data, err := f.b.Get(context.Background(), key)
	require.NoError(t, err)
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(data)
	data.Close()
	require.NoError(t, f.b.Delete(context.Background(), key))
	half := buf.Bytes()[:buf.Len()/2]
	require.NoError(t, f.b.Put(context.Background(), key, bytes.NewReader(half), int64(len(half))))
	rep, err := verify.Backups(context.Background(), f.r, instance, nil, 2, nil)
	require.NoError(t, err)
	require.Len(t, rep.Problems, 1)
	assert.Equal(t, key, rep.Problems[0].Key)
}

// An encrypted backup without any key object cannot be decrypted: a
// problem.
func TestVerifyReportsEncryptedBackupWithoutKey(t *testing.T) {
	f := newFixture(t)
	m := f.add("E", manifest.TypeFull, "", 0, 100, 0)
	m.Encrypted, m.EncryptionKeyID = true, "local:7a1c40e3c381b849"
	f.overwrite(m)
	rep, err := verify.Backups(context.Background(), f.r, instance, nil, 2, nil)
	require.NoError(t, err)
	require.Len(t, rep.Problems, 1, problemsOf(rep))
	assert.Contains(t, rep.Problems[0].What, "no key object")
	assert.Equal(t, repo.BackupKeysPrefix(instance, "E"), rep.Problems[0].Key)

	// With its wrapped key stored, it passes.
	require.NoError(t, f.r.BackupKeys(instance, "E").Write(context.Background(), repo.KeyObject{KEKID: "local:7a1c40e3c381b849", Wrapped: make([]byte, 60)}))
	rep, err = verify.Backups(context.Background(), f.r, instance, nil, 2, nil)
	require.NoError(t, err)
	assert.True(t, rep.OK(), problemsOf(rep))
}

// archiveFixture: a backup whose consistent point is at binlog.000001:4
// and three archived segments after it.
func archiveFixture(t *testing.T, st *binlog.Store, f *fixture) {
	t.Helper()
	m := f.add("B", manifest.TypeFull, "", 0, 100, 0)
	m.BinlogFile, m.BinlogPos, m.ConsistentAt = "binlog.000001", 4, t0
	f.overwrite(m)
	pos := uint32(4)
	for i := range 3 {
		ev := bytes.Repeat([]byte("event "), 10+i)
		seg := &binlog.Segment{Seq: uint64(i + 1), File: "binlog.000001", Start: pos, End: pos + uint32(len(ev)), Events: 1,
			FirstTime: t0.Add(time.Duration(i) * time.Second), LastTime: t0.Add(time.Duration(i) * time.Second)}
		require.NoError(t, st.WriteSegment(context.Background(), seg, ev))
		pos = seg.End
	}
}

func TestVerifyArchive(t *testing.T) {
	ctx := context.Background()
	t.Run("intact", func(t *testing.T) {
		f := newFixture(t)
		st := &binlog.Store{B: f.b, Instance: instance}
		archiveFixture(t, st, f)
		rep := &verify.Report{}
		require.NoError(t, verify.Archive(ctx, f.r, instance, verify.ArchiveOptions{}, rep))
		assert.True(t, rep.OK(), problemsOf(rep))
		assert.Equal(t, 3, rep.Segments)
		assert.Equal(t, 1, rep.Windows)
	})
	t.Run("missing data object", func(t *testing.T) {
		f := newFixture(t)
		st := &binlog.Store{B: f.b, Instance: instance}
		archiveFixture(t, st, f)
		ix, err := st.ReadIndex(ctx)
		require.NoError(t, err)
		lost := st.DataKey(&ix.Segments[1])
		require.NoError(t, f.b.Delete(ctx, lost))
		rep := &verify.Report{}
		require.NoError(t, verify.Archive(ctx, f.r, instance, verify.ArchiveOptions{}, rep))
		require.Len(t, rep.Problems, 1, problemsOf(rep))
		assert.Equal(t, lost, rep.Problems[0].Key)
		assert.Equal(t, 1, rep.Segments, "the window ends before the missing segment")
	})
	t.Run("corrupt data object", func(t *testing.T) {
		f := newFixture(t)
		st := &binlog.Store{B: f.b, Instance: instance}
		archiveFixture(t, st, f)
		ix, err := st.ReadIndex(ctx)
		require.NoError(t, err)
		key := st.DataKey(&ix.Segments[2])
		require.NoError(t, f.b.Delete(ctx, key))
		junk := bytes.Repeat([]byte{1}, int(ix.Segments[2].StoredSize))
		require.NoError(t, f.b.Put(ctx, key, bytes.NewReader(junk), int64(len(junk))))
		rep := &verify.Report{}
		require.NoError(t, verify.Archive(ctx, f.r, instance, verify.ArchiveOptions{}, rep))
		require.Len(t, rep.Problems, 1, problemsOf(rep))
		assert.Equal(t, st.IndexKey(3), rep.Problems[0].Key)
		assert.Contains(t, rep.Problems[0].What, "sha256")
	})
	t.Run("hostile index record", func(t *testing.T) {
		f := newFixture(t)
		st := &binlog.Store{B: f.b, Instance: instance}
		archiveFixture(t, st, f)
		rec := []byte(`{"seq":4,"file":"../../../ESCAPED.000001","start":4,"end":5,"raw_size":1,"sha256":"` + strings.Repeat("0", 64) + `"}`)
		require.NoError(t, f.b.Put(ctx, st.IndexKey(4), bytes.NewReader(rec), int64(len(rec))))
		rep := &verify.Report{}
		require.NoError(t, verify.Archive(ctx, f.r, instance, verify.ArchiveOptions{}, rep))
		require.Len(t, rep.Problems, 1, problemsOf(rep))
		assert.Contains(t, rep.Problems[0].What, st.IndexKey(4))
	})
	t.Run("planted plaintext segment on an encrypted instance", func(t *testing.T) {
		f := newFixture(t)
		kek := crypttest.KEK(t)
		st := &binlog.Store{B: f.b, Instance: instance, Keys: crypttest.Ring(t, kek), Encrypt: true}
		archiveFixture(t, st, f)
		ix, err := st.ReadIndex(ctx)
		require.NoError(t, err)
		ev := []byte("planted event")
		seg := &binlog.Segment{Seq: 4, File: "binlog.000001", Start: ix.Segments[2].End, End: ix.Segments[2].End + uint32(len(ev)), Events: 1,
			FirstTime: t0, LastTime: t0}
		require.NoError(t, (&binlog.Store{B: f.b, Instance: instance}).WriteSegment(ctx, seg, ev))
		for _, keys := range []bool{false, true} {
			opt := verify.ArchiveOptions{Encrypted: true}
			if keys {
				opt.Keys = crypttest.Ring(t, kek)
			}
			rep := &verify.Report{}
			require.NoError(t, verify.Archive(ctx, f.r, instance, opt, rep))
			require.Len(t, rep.Problems, 1, problemsOf(rep))
			assert.Equal(t, st.IndexKey(4), rep.Problems[0].Key)
			assert.Contains(t, rep.Problems[0].What, "not encrypted")
			assert.Equal(t, 3, rep.Segments)
		}
	})
}
