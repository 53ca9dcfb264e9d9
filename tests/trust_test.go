package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/xbstream/xbstreamtest"
	"github.com/strata-backup/strata/workflows"
)

// plainInstance is a second, unencrypted instance on the source server: a
// writer of the bucket can plant whole backups of it.
const plainInstance extraInstance = `
  - id: plain
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    encryption: {enabled: false}
`

// getObject and putObject read and (over)write an object of the repository
// as a writer of the bucket would.
func (s *stack) getObject(key string) []byte {
	s.t.Helper()
	rc, err := s.repo.Backend().Get(s.ctx, key)
	require.NoError(s.t, err, key)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(s.t, err)
	return b
}

func (s *stack) putObject(key string, b []byte) {
	s.t.Helper()
	require.NoError(s.t, s.repo.Backend().Delete(s.ctx, key))
	require.NoError(s.t, s.repo.Backend().Put(s.ctx, key, bytes.NewReader(b), int64(len(b))), key)
}

func (s *stack) deleteObject(key string) {
	s.t.Helper()
	require.NoError(s.t, s.repo.Backend().Delete(s.ctx, key))
}

// restoreTo runs a restore (or, with a target, a PITR) into a new dir and
// returns the error and the target dir.
func (s *stack) restoreTo(instance, backupID string, target binlog.Target, allowUnencrypted bool) (string, error) {
	s.t.Helper()
	dir := filepath.Join(s.t.TempDir(), "a", "b", "target")
	require.NoError(s.t, os.MkdirAll(filepath.Dir(dir), 0o700))
	var res workflows.RestoreResult
	_, err := s.run(fmt.Sprintf("restore/h1:%s", dir), workflows.RestoreWorkflowName, workflows.RestoreRequest{
		Instance: instance, BackupID: backupID, TargetDir: dir, Target: target, AllowUnencrypted: allowUnencrypted,
	}, &res)
	return dir, err
}

// requireCLIFails runs the CLI and requires it to fail with every want in
// its output.
func (s *stack) requireCLIFails(want []string, args ...string) {
	s.t.Helper()
	out, err := s.cli(args...)
	require.Error(s.t, err, "strata %s must fail:\n%s", strings.Join(args, " "), out)
	for _, w := range want {
		assert.Contains(s.t, out, w, "strata %s", strings.Join(args, " "))
	}
}

// noEscapes fails if a file whose name starts with ESCAPED exists anywhere
// under root.
func noEscapes(t *testing.T, root string) {
	t.Helper()
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), "ESCAPED") {
			t.Errorf("%s was written outside its directory", p)
		}
		return nil
	})
}

// A corrupt, truncated or hostile object in the repository makes verify,
// ls, restore and point-in-time restore fail with a typed error that names
// the object, and nothing is written outside the target, staging and
// rebuild directories.
func TestHostileRepositoryObjectsFailTyped(t *testing.T) {
	keyFile, _ := newKeyFile(t, t.TempDir(), "kek")
	s := newStack(t, withTopLevel(t, "encryption:\n  key_file: "+keyFile+"\n"), plainInstance)
	require.True(t, s.cfg.Instances[0].EncryptionEnabled(), "db1 is encrypted")
	testRoot := filepath.Dir(t.TempDir())
	t.Cleanup(func() { noEscapes(t, testRoot) })

	db := s.numbered()
	arch := s.startArchive("db1", 0)
	insertRows(t, db, 1, 50)
	s.backup("base", "full")
	for i := 51; i <= 150; i += 25 {
		insertRows(t, db, i, i+24)
		time.Sleep(1100 * time.Millisecond) // a segment each (flushed every second)
	}
	s.waitArchived("db1", gtidPos(t, db))
	s.stopArchive(arch)

	st := &binlog.Store{B: s.repo.Backend(), Instance: "db1"}
	ix, err := st.ReadIndex(s.ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ix.Segments), 3, "several segments")
	last := ix.Segments[len(ix.Segments)-1]
	require.NotEmpty(t, last.KeyRef, "segments are encrypted")
	require.NotEmpty(t, last.MAC, "records are authenticated")
	end := binlog.Target{Time: last.LastTime}

	// All is well to begin with.
	out, err := s.cli("verify", "db1", "--local", "--archive")
	require.NoError(t, err, out)
	assert.Contains(t, out, "all backups intact")
	out, err = s.cli("ls", "db1")
	require.NoError(t, err, out)
	assert.Contains(t, out, "PITR window")

	next := last.Seq + 1
	recordKey := st.IndexKey(next)
	plant := func(rec map[string]any) {
		b, err := json.Marshal(rec)
		require.NoError(t, err)
		s.putObject(recordKey, b)
	}
	baseRecord := func() map[string]any {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(s.getObject(st.IndexKey(last.Seq)), &rec))
		rec["seq"], rec["start"], rec["end"], rec["raw_size"] = next, last.End, last.End+100, 100
		delete(rec, "data_key")
		return rec
	}

	t.Run("index record with a path-traversal file name", func(t *testing.T) {
		rec := baseRecord()
		rec["file"] = "../../../ESCAPED.000001"
		plant(rec)
		defer s.deleteObject(recordKey)
		s.requireCLIFails([]string{recordKey, "binlog file name"}, "ls", "db1")
		s.requireCLIFails([]string{recordKey}, "verify", "db1", "--local", "--archive")
		_, err := s.restoreTo("db1", "", end, false)
		requireAppError(t, err, "CorruptBackup", recordKey)
	})

	t.Run("index record with an oversized raw_size", func(t *testing.T) {
		rec := baseRecord()
		rec["raw_size"], rec["end"] = int64(1)<<40, last.End
		plant(rec)
		defer s.deleteObject(recordKey)
		s.requireCLIFails([]string{recordKey, "raw_size"}, "ls", "db1")
		s.requireCLIFails([]string{recordKey, "raw_size"}, "verify", "db1", "--local", "--archive")
		_, err := s.restoreTo("db1", "", end, false)
		requireAppError(t, err, "CorruptBackup", "raw_size")
	})

	manifestKey := repo.ManifestKey("db1", "base")
	goodManifest := s.getObject(manifestKey)
	t.Run("truncated manifest", func(t *testing.T) {
		s.putObject(manifestKey, goodManifest[:len(goodManifest)/2])
		defer s.putObject(manifestKey, goodManifest)
		s.requireCLIFails([]string{manifestKey}, "ls", "db1")
		s.requireCLIFails([]string{manifestKey, "invalid manifest"}, "verify", "db1", "--local")
		_, err := s.restoreTo("db1", "base", binlog.Target{}, false)
		requireAppError(t, err, "CorruptBackup", manifestKey)
		_, err = s.restoreTo("db1", "", end, false)
		requireAppError(t, err, "CorruptBackup", manifestKey)
	})

	t.Run("manifest with a hostile chunk key", func(t *testing.T) {
		var m manifest.Manifest
		require.NoError(t, json.Unmarshal(goodManifest, &m))
		m.Chunks[0].Key = "chunks/../../../../ESCAPED"
		b, err := json.Marshal(&m)
		require.NoError(t, err)
		s.putObject(manifestKey, b)
		defer s.putObject(manifestKey, goodManifest)
		s.requireCLIFails([]string{manifestKey, "chunk 0: key"}, "ls", "db1")
		s.requireCLIFails([]string{manifestKey, "chunk 0: key"}, "verify", "db1", "--local")
		_, err = s.restoreTo("db1", "base", binlog.Target{}, false)
		requireAppError(t, err, "CorruptBackup", manifestKey)
	})

	t.Run("backup stream with a hostile member name", func(t *testing.T) {
		// A complete, well-formed backup of the unencrypted instance whose
		// stream names a member outside the extraction directory.
		s.backupOf("plain", "p1", "full")
		p1, err := s.repo.ReadManifest(s.ctx, "plain", "p1")
		require.NoError(t, err)
		member := "../../../../ESCAPED-member"
		stream := append(append(xbstreamtest.Chunk('P', "ibdata1", []byte("page")), xbstreamtest.Chunk('E', "ibdata1", nil)...),
			append(xbstreamtest.Chunk('P', member, []byte("evil")), xbstreamtest.Chunk('E', member, nil)...)...)
		res, err := pipeline.Upload(s.ctx, s.repo.Backend(), repo.BackupPrefix("plain", "evil"), bytes.NewReader(stream),
			pipeline.UploadOptions{ChunkSize: pipeline.MinChunkSize, Codec: "zstd", Parallelism: 1})
		require.NoError(t, err)
		m := *p1
		m.BackupID, m.StartTime, m.EndTime = "evil", p1.StartTime.Add(time.Second), p1.EndTime.Add(time.Second)
		m.RawSize, m.StoredSize, m.RawSHA256, m.Compression, m.ChunkSize, m.Chunks = res.RawSize, res.StoredSize, res.RawSHA256, res.Codec, res.ChunkSize, res.Chunks
		m.UploadedBytes, m.ReusedBytes = res.StoredSize, 0
		require.NoError(t, s.repo.WriteManifest(s.ctx, &m))
		dir, err := s.restoreTo("plain", "evil", binlog.Target{}, false)
		requireAppError(t, err, "CorruptBackup", member)
		_, serr := os.Stat(filepath.Join(filepath.Dir(dir), "ESCAPED-member"))
		assert.ErrorIs(t, serr, os.ErrNotExist)
	})

	t.Run("missing segment data object", func(t *testing.T) {
		hole := ix.Segments[len(ix.Segments)-2]
		dataKey := st.DataKey(&hole)
		data := s.getObject(dataKey)
		s.deleteObject(dataKey)
		defer func() {
			require.NoError(t, s.repo.Backend().Put(s.ctx, dataKey, bytes.NewReader(data), int64(len(data))))
		}()
		out, err := s.cli("ls", "db1")
		require.NoError(t, err, out)
		assert.Contains(t, out, dataKey, "ls shows the hole")
		before := ix.Segments[len(ix.Segments)-3]
		assert.Contains(t, out, fmt.Sprintf("%s:%d, GTID", before.File, before.End), "the window ends before the hole")
		s.requireCLIFails([]string{dataKey, "missing"}, "verify", "db1", "--local", "--archive")
		_, err = s.restoreTo("db1", "", end, false)
		requireAppError(t, err, "OutsideRecoveryWindow", dataKey)
	})

	// From here on, PITR reaches the agent: the planted records are only
	// refused where the key is.
	t.Run("planted unencrypted index record", func(t *testing.T) {
		ev := bytes.Repeat([]byte{0}, 19)
		planted := &binlog.Segment{Seq: next, File: last.File, Start: last.End, End: last.End + uint32(len(ev)), Events: 1,
			FirstTime: last.LastTime.Add(time.Minute), LastTime: last.LastTime.Add(time.Minute), LastGTID: "0-1-999999"}
		require.NoError(t, (&binlog.Store{B: s.repo.Backend(), Instance: "db1"}).WriteSegment(s.ctx, planted, ev))
		defer func() {
			s.deleteObject(recordKey)
			s.deleteObject(st.DataKey(planted))
		}()
		s.requireCLIFails([]string{recordKey, "not encrypted"}, "verify", "db1", "--local", "--archive")
		_, err := s.restoreTo("db1", "", binlog.Target{Time: planted.LastTime}, false)
		requireAppError(t, err, "Unencrypted", recordKey)
	})

	t.Run("altered authenticated index record", func(t *testing.T) {
		key := st.IndexKey(last.Seq)
		orig := s.getObject(key)
		var rec map[string]any
		require.NoError(t, json.Unmarshal(orig, &rec))
		later := last.LastTime.Add(time.Hour)
		rec["last_time"] = later.Format(time.RFC3339)
		b, err := json.Marshal(rec)
		require.NoError(t, err)
		s.putObject(key, b)
		defer s.putObject(key, orig)
		s.requireCLIFails([]string{key, "not authenticated"}, "verify", "db1", "--local", "--archive")
		for _, allow := range []bool{false, true} {
			_, err = s.restoreTo("db1", "", binlog.Target{Time: later}, allow)
			requireAppError(t, err, "Unauthenticated", key)
		}
	})

	// Everything put back: the repository verifies again.
	out, err = s.cli("verify", "db1", "--local", "--archive")
	require.NoError(t, err, out)
}
