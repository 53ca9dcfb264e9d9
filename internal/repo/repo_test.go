package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

var t0 = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

func newManifest(instance, id string, start time.Time) *manifest.Manifest {
	return &manifest.Manifest{
		FormatVersion: manifest.FormatVersion,
		BackupID:      id,
		Instance:      instance,
		Type:          manifest.TypeFull,
		StartTime:     start,
		EndTime:       start.Add(time.Minute),
		Compression:   "zstd",
		RawSize:       1,
		StoredSize:    1,
		Chunks: []manifest.Chunk{{Index: 0, Key: "chunks/00000000.zst", RawSize: 1, StoredSize: 1,
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},
	}
}

func put(t *testing.T, b storage.Backend, key string) {
	t.Helper()
	require.NoError(t, b.Put(context.Background(), key, bytes.NewReader([]byte("x")), 1))
}

func TestLayout(t *testing.T) {
	assert.Equal(t, "db1/backups/", repo.BackupsPrefix("db1"))
	assert.Equal(t, "db1/backups/20240601T000000Z/", repo.BackupPrefix("db1", "20240601T000000Z"))
	assert.Equal(t, "db1/backups/20240601T000000Z/manifest.json", repo.ManifestKey("db1", "20240601T000000Z"))
}

func TestWriteReadManifest(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	assert.Equal(t, "memory", r.String())
	assert.Same(t, b, r.Backend())
	m := newManifest("db1", "b1", t0)
	require.NoError(t, r.WriteManifest(ctx, m))

	rc, err := b.Get(ctx, "db1/backups/b1/manifest.json")
	require.NoError(t, err)
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"backup_id": "b1"`)

	got, err := r.ReadManifest(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.Equal(t, m, got)

	// Manifests are immutable.
	err = r.WriteManifest(ctx, m)
	require.Error(t, err)
	assert.ErrorIs(t, err, storage.ErrExists)
	assert.ErrorContains(t, err, "already has a manifest")
}

func TestWriteManifestInvalid(t *testing.T) {
	r := repo.New(memory.New())
	m := newManifest("db1", "", t0)
	err := r.WriteManifest(context.Background(), m)
	require.Error(t, err)
	assert.ErrorIs(t, err, manifest.ErrInvalid)
	m = newManifest("db/1", "b1", t0)
	assert.ErrorIs(t, r.WriteManifest(context.Background(), m), manifest.ErrInvalid)
}

func TestReadManifestNotFound(t *testing.T) {
	r := repo.New(memory.New())
	_, err := r.ReadManifest(context.Background(), "db1", "nope")
	require.Error(t, err)
	assert.ErrorIs(t, err, repo.ErrBackupNotFound)
	assert.EqualError(t, err, `backup "nope" of instance "db1" not found in memory`)

	// A partial upload is not found either.
	put(t, r.Backend(), "db1/backups/partial/chunks/00000000.zst")
	_, err = r.ReadManifest(context.Background(), "db1", "partial")
	assert.ErrorIs(t, err, repo.ErrBackupNotFound)
}

func TestReadManifestInvalid(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	require.NoError(t, b.Put(ctx, repo.ManifestKey("db1", "bad"), bytes.NewReader([]byte("{garbage")), 8))
	_, err := r.ReadManifest(ctx, "db1", "bad")
	require.Error(t, err)
	assert.ErrorIs(t, err, manifest.ErrInvalid)
	assert.NotErrorIs(t, err, repo.ErrBackupNotFound)
	assert.ErrorContains(t, err, "db1/backups/bad/manifest.json")

	// A manifest copied to the wrong directory.
	data, err := manifest.Encode(newManifest("db1", "other", t0))
	require.NoError(t, err)
	require.NoError(t, b.Put(ctx, repo.ManifestKey("db1", "moved"), bytes.NewReader(data), int64(len(data))))
	_, err = r.ReadManifest(ctx, "db1", "moved")
	assert.ErrorIs(t, err, manifest.ErrInvalid)
	assert.ErrorContains(t, err, `describes backup "other"`)

	_, err = r.ReadManifest(ctx, "db1", "../x")
	assert.ErrorContains(t, err, "invalid")
	_, err = r.ReadManifest(ctx, "", "x")
	assert.ErrorContains(t, err, "instance is empty")
}

func TestListBackups(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)

	list, err := r.ListBackups(ctx, "db1")
	require.NoError(t, err)
	assert.Empty(t, list)

	// Written out of order; two share a start time.
	for _, m := range []*manifest.Manifest{
		newManifest("db1", "c", t0.Add(2*time.Hour)),
		newManifest("db1", "b", t0),
		newManifest("db1", "a", t0.Add(time.Hour)),
		newManifest("db1", "a2", t0),
		newManifest("db2", "z", t0), // another instance
		newManifest("db10", "y", t0),
	} {
		put(t, b, repo.BackupPrefix(m.Instance, m.BackupID)+"chunks/00000000.zst")
		require.NoError(t, r.WriteManifest(ctx, m))
	}
	put(t, b, "db1/backups/partial/chunks/00000000.zst")
	put(t, b, "db1/backups/stray-object")
	put(t, b, "db1/other/thing")

	list, err = r.ListBackups(ctx, "db1")
	require.NoError(t, err)
	var ids []string
	for _, m := range list {
		ids = append(ids, m.BackupID)
		assert.Equal(t, "db1", m.Instance)
	}
	assert.Equal(t, []string{"a2", "b", "a", "c"}, ids)

	list, err = r.ListBackups(ctx, "db2")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "z", list[0].BackupID)

	_, err = r.ListBackups(ctx, "a/b")
	assert.Error(t, err)
}

func TestListBackupsCorruptManifest(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	require.NoError(t, r.WriteManifest(ctx, newManifest("db1", "good", t0)))
	require.NoError(t, b.Put(ctx, repo.ManifestKey("db1", "bad"), bytes.NewReader([]byte("{}")), 2))
	_, err := r.ListBackups(ctx, "db1")
	require.Error(t, err)
	assert.ErrorIs(t, err, manifest.ErrInvalid)
	assert.ErrorContains(t, err, `list backups of instance "db1"`)
}

func TestListPartial(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	ids, err := r.ListPartial(ctx, "db1")
	require.NoError(t, err)
	assert.Empty(t, ids)
	assert.NotNil(t, ids)

	require.NoError(t, r.WriteManifest(ctx, newManifest("db1", "complete", t0)))
	put(t, b, "db1/backups/complete/chunks/00000000.zst")
	put(t, b, "db1/backups/p2/chunks/00000000.zst")
	put(t, b, "db1/backups/p1/chunks/00000000.zst")
	put(t, b, "db1/backups/p1/chunks/00000001.zst")
	put(t, b, "db1/backups/p3/manifest.json.tmp")
	put(t, b, "db2/backups/p4/chunks/00000000.zst")

	ids, err = r.ListPartial(ctx, "db1")
	require.NoError(t, err)
	assert.Equal(t, []string{"p1", "p2", "p3"}, ids)
}

func TestDeleteBackupData(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	require.NoError(t, r.WriteManifest(ctx, newManifest("db1", "b1", t0)))
	require.NoError(t, r.WriteManifest(ctx, newManifest("db1", "b10", t0)))
	for i := range 5 {
		put(t, b, fmt.Sprintf("db1/backups/b1/chunks/%08d.zst", i))
	}
	put(t, b, "db1/backups/b10/chunks/00000000.zst")

	require.NoError(t, r.DeleteBackupData(ctx, "db1", "b1"))
	objs, err := b.List(ctx, "db1/")
	require.NoError(t, err)
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	assert.Equal(t, []string{
		"db1/backups/b1/manifest.json",
		"db1/backups/b10/chunks/00000000.zst",
		"db1/backups/b10/manifest.json",
	}, keys)
	// Idempotent.
	require.NoError(t, r.DeleteBackupData(ctx, "db1", "b1"))

	// Full deletion: manifest first, then data.
	require.NoError(t, r.DeleteManifest(ctx, "db1", "b10"))
	ids, err := r.ListPartial(ctx, "db1")
	require.NoError(t, err)
	assert.Equal(t, []string{"b10"}, ids)
	require.NoError(t, r.DeleteBackupData(ctx, "db1", "b10"))
	ids, err = r.ListPartial(ctx, "db1")
	require.NoError(t, err)
	assert.Empty(t, ids)
	require.NoError(t, r.DeleteManifest(ctx, "db1", "b10"))

	assert.Error(t, r.DeleteBackupData(ctx, "db1", ""))
	assert.Error(t, r.DeleteManifest(ctx, "..", "x"))
}

// failingList makes List fail.
type failingList struct{ storage.Backend }

var errList = errors.New("network down")

func (failingList) List(context.Context, string) ([]storage.ObjectInfo, error) { return nil, errList }

func TestBackendErrors(t *testing.T) {
	r := repo.New(failingList{memory.New()})
	_, err := r.ListBackups(context.Background(), "db1")
	assert.ErrorIs(t, err, errList)
	_, err = r.ListPartial(context.Background(), "db1")
	assert.ErrorIs(t, err, errList)
	assert.ErrorIs(t, r.DeleteBackupData(context.Background(), "db1", "b1"), errList)
}

// TestBackupLifecycle uploads a stream with the pipeline, writes the
// manifest last, and restores it.
func TestBackupLifecycle(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	data := bytes.Repeat([]byte("row data 0123456789 "), 20000)
	prefix := repo.BackupPrefix("db1", "b1")
	res, err := pipeline.Upload(ctx, b, prefix, bytes.NewReader(data), pipeline.UploadOptions{ChunkSize: pipeline.MinChunkSize})
	require.NoError(t, err)

	ids, err := r.ListPartial(ctx, "db1")
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, ids, "before its manifest, the backup is partial")

	m := newManifest("db1", "b1", t0)
	m.Chunks, m.RawSize, m.StoredSize, m.RawSHA256 = res.Chunks, res.RawSize, res.StoredSize, res.RawSHA256
	m.Compression, m.ChunkSize = res.Codec, res.ChunkSize
	require.NoError(t, r.WriteManifest(ctx, m))

	list, err := r.ListBackups(ctx, "db1")
	require.NoError(t, err)
	require.Len(t, list, 1)
	var out bytes.Buffer
	_, err = pipeline.Download(ctx, b, prefix, list[0].Chunks, list[0].Compression, &out,
		pipeline.DownloadOptions{ExpectRawSHA256: list[0].RawSHA256})
	require.NoError(t, err)
	assert.Equal(t, data, out.Bytes())
}

// A manifest with as many chunks as a multi-terabyte backup has (more than
// 64 MiB encoded) is written and read back: a backup reported complete can
// be listed and restored.
func TestLargeManifestReadsBack(t *testing.T) {
	ctx := context.Background()
	r := repo.New(memory.New())
	m := newManifest("db1", "big", t0)
	const n = 300_000
	m.ChunkSize = 16 << 20
	m.Chunks = make([]manifest.Chunk, n)
	m.RawSize, m.StoredSize = 0, 0
	for i := range m.Chunks {
		m.Chunks[i] = manifest.Chunk{Index: i, Key: fmt.Sprintf("chunks/%032x.zst", i), RawSize: 16 << 20, StoredSize: 16<<20 + 32,
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
		m.RawSize += 16 << 20
		m.StoredSize += 16<<20 + 32
	}
	data, err := manifest.Encode(m)
	require.NoError(t, err)
	require.Greater(t, len(data), 64<<20)
	require.NoError(t, r.WriteManifest(ctx, m))
	got, err := r.ReadManifest(ctx, "db1", "big")
	require.NoError(t, err)
	assert.Len(t, got.Chunks, n)
}
