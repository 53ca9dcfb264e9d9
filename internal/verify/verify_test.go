package verify_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/verify"
)

const instance = "db1"

var t0 = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// fixture is a repository with real chunks.
type fixture struct {
	t    *testing.T
	b    *memory.Backend
	r    *repo.Repo
	seed uint64
}

func newFixture(t *testing.T) *fixture {
	b := memory.New()
	return &fixture{t: t, b: b, r: repo.New(b)}
}

// add uploads a random stream of 3.5 chunks with the pipeline and writes the
// manifest of a backup starting hour hours after t0.
func (f *fixture) add(id, typ, parent string, from, to uint64, hour int) *manifest.Manifest {
	f.t.Helper()
	ctx := context.Background()
	f.seed++
	rng := rand.New(rand.NewPCG(f.seed, 3))
	data := make([]byte, 3*pipeline.MinChunkSize+pipeline.MinChunkSize/2)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	res, err := pipeline.Upload(ctx, f.b, repo.BackupPrefix(instance, id), bytes.NewReader(data),
		pipeline.UploadOptions{ChunkSize: pipeline.MinChunkSize, Codec: "zstd", Parallelism: 2})
	require.NoError(f.t, err)
	start := t0.Add(time.Duration(hour) * time.Hour)
	m := &manifest.Manifest{
		FormatVersion: manifest.FormatVersion,
		BackupID:      id,
		Instance:      instance,
		Type:          typ,
		ParentID:      parent,
		StartTime:     start,
		EndTime:       start.Add(time.Minute),
		FromLSN:       from,
		ToLSN:         to,
		RawSize:       res.RawSize,
		StoredSize:    res.StoredSize,
		RawSHA256:     res.RawSHA256,
		Compression:   res.Codec,
		ChunkSize:     res.ChunkSize,
		Chunks:        res.Chunks,
	}
	require.NoError(f.t, f.r.WriteManifest(ctx, m))
	return m
}

// chain builds: F (full) <- I1 (incremental); F <- D (differential) <- I2
// (incremental); and an unrelated full F2.
func (f *fixture) chain() {
	f.add("F", manifest.TypeFull, "", 0, 100, 0)
	f.add("I1", manifest.TypeIncremental, "F", 100, 200, 6)
	f.add("D", manifest.TypeDifferential, "F", 100, 300, 12)
	f.add("I2", manifest.TypeIncremental, "D", 300, 400, 18)
	f.add("F2", manifest.TypeFull, "", 0, 500, 24)
}

func (f *fixture) chunkKey(id string, i int) string {
	return repo.BackupPrefix(instance, id) + pipeline.ChunkKey(i, ".zst")
}

// replace overwrites an object (Put never overwrites, so delete first).
func (f *fixture) replace(key string, mutate func([]byte) []byte) {
	f.t.Helper()
	ctx := context.Background()
	rc, err := f.b.Get(ctx, key)
	require.NoError(f.t, err)
	data, err := io.ReadAll(rc)
	require.NoError(f.t, err)
	require.NoError(f.t, rc.Close())
	data = mutate(bytes.Clone(data))
	require.NoError(f.t, f.b.Delete(ctx, key))
	require.NoError(f.t, f.b.Put(ctx, key, bytes.NewReader(data), int64(len(data))))
}

func (f *fixture) verify(ids ...string) *verify.Report {
	f.t.Helper()
	rep, err := verify.Backups(context.Background(), f.r, instance, ids, 3, nil)
	require.NoError(f.t, err)
	require.NotNil(f.t, rep)
	return rep
}

func TestGoodRepository(t *testing.T) {
	f := newFixture(t)
	f.chain()
	list, err := f.r.ListBackups(context.Background(), instance)
	require.NoError(t, err)
	var stored int64
	for _, m := range list {
		require.Len(t, m.Chunks, 4)
		stored += m.StoredSize
	}

	for _, par := range []int{0, 1, 4} {
		t.Run(fmt.Sprint("parallelism ", par), func(t *testing.T) {
			type call struct {
				id          string
				done, total int
			}
			var calls []call
			rep, err := verify.Backups(context.Background(), f.r, instance, nil, par, func(id string, done, total int) {
				calls = append(calls, call{id, done, total})
			})
			require.NoError(t, err)
			assert.True(t, rep.OK(), "problems: %v", rep.Problems)
			assert.Empty(t, rep.Problems)
			assert.Equal(t, instance, rep.Instance)
			assert.Equal(t, []string{"F", "I1", "D", "I2", "F2"}, rep.Checked)
			assert.Equal(t, 20, rep.Chunks)
			assert.Equal(t, stored, rep.Bytes)
			assert.Equal(t, []call{{"F", 1, 5}, {"I1", 2, 5}, {"D", 3, 5}, {"I2", 4, 5}, {"F2", 5, 5}}, calls)
		})
	}

	// An empty list of IDs means all of them.
	assert.Len(t, f.verify([]string{}...).Checked, 5)

	// An empty repository is fine.
	rep, err := verify.Backups(context.Background(), repo.New(memory.New()), instance, nil, 0, nil)
	require.NoError(t, err)
	assert.True(t, rep.OK())
	assert.Empty(t, rep.Checked)
	assert.NotNil(t, rep.Checked)
}

func TestFlippedByte(t *testing.T) {
	f := newFixture(t)
	f.chain()
	key := f.chunkKey("I1", 2)
	f.replace(key, func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })

	rep := f.verify()
	assert.False(t, rep.OK())
	require.Len(t, rep.Problems, 1)
	p := rep.Problems[0]
	assert.Equal(t, "I1", p.BackupID)
	assert.Equal(t, 2, p.Chunk)
	assert.Equal(t, key, p.Key)
	assert.Contains(t, p.What, "sha256 mismatch")
	assert.Equal(t, "backup I1: chunk 2 ("+key+"): sha256 mismatch: stored data is corrupt", p.String())
	assert.Len(t, rep.Checked, 5, "the other backups are checked too")

	// A truncated chunk is a size mismatch.
	f.replace(f.chunkKey("F2", 0), func(b []byte) []byte { return b[:len(b)-1] })
	rep = f.verify()
	require.Len(t, rep.Problems, 2)
	assert.Equal(t, "F2", rep.Problems[0].BackupID)
	assert.Equal(t, 0, rep.Problems[0].Chunk)
	assert.Contains(t, rep.Problems[0].What, "size mismatch")
	assert.Equal(t, "I1", rep.Problems[1].BackupID)
}

func TestDeletedChunk(t *testing.T) {
	f := newFixture(t)
	f.chain()
	key := f.chunkKey("F", 1)
	require.NoError(t, f.b.Delete(context.Background(), key))

	rep := f.verify()
	assert.False(t, rep.OK())
	require.Len(t, rep.Problems, 1)
	p := rep.Problems[0]
	assert.Equal(t, verify.Problem{BackupID: "F", Chunk: 1, Key: key, What: p.What}, p)
	assert.Contains(t, p.What, "missing from repository")
	assert.Contains(t, p.What, storage.ErrNotFound.Error())
}

func TestMissingParent(t *testing.T) {
	f := newFixture(t)
	f.chain()
	f.add("orphan", manifest.TypeIncremental, "gone", 400, 500, 30)
	f.add("orphan-child", manifest.TypeIncremental, "orphan", 500, 600, 31)

	rep := f.verify()
	require.Len(t, rep.Problems, 1)
	assert.Equal(t, verify.Problem{
		BackupID: "orphan", Chunk: -1, Key: repo.ManifestKey(instance, "orphan"),
		What: "parent gone is missing: the incremental backup cannot be restored",
	}, rep.Problems[0])
	assert.Equal(t, "backup orphan: parent gone is missing: the incremental backup cannot be restored", rep.Problems[0].String())

	// Verifying the child checks its chain as far as it goes.
	rep = f.verify("orphan-child")
	assert.Equal(t, []string{"orphan", "orphan-child"}, rep.Checked)
	require.Len(t, rep.Problems, 1)
	assert.Equal(t, "orphan", rep.Problems[0].BackupID)
}

func TestLSNProblems(t *testing.T) {
	f := newFixture(t)
	f.chain()
	f.add("gap", manifest.TypeIncremental, "I2", 450, 500, 19)          // I2 ends at 400
	f.add("diff-of-inc", manifest.TypeDifferential, "I1", 200, 250, 20) // a differential's parent must be a full
	f.add("backwards", manifest.TypeIncremental, "F2", 500, 499, 25)    // to < from
	f.add("full-from", manifest.TypeFull, "", 7, 900, 26)               // a full starts at LSN 0
	f.add("full-parent", manifest.TypeFull, "F2", 0, 1000, 27)          // a full has no parent
	f.add("diff-gap", manifest.TypeDifferential, "F2", 400, 600, 28)    // F2 ends at 500
	f.add("good-diff-inc", manifest.TypeIncremental, "D", 300, 450, 29) // a second incremental on D is fine

	rep := f.verify()
	var got []string
	for _, p := range rep.Problems {
		assert.Equal(t, -1, p.Chunk)
		assert.Equal(t, repo.ManifestKey(instance, p.BackupID), p.Key)
		got = append(got, p.BackupID+": "+p.What)
	}
	assert.Equal(t, []string{
		"backwards: to_lsn 499 is lower than from_lsn 500",
		"diff-gap: LSN gap: from_lsn 400 does not match to_lsn 500 of parent F2",
		"diff-of-inc: parent I1 of a differential backup is incremental (must be a full backup)",
		"full-from: full backup has from_lsn 7 (must be 0)",
		"full-parent: full backup has parent_id F2 (a full has no parent)",
		"gap: LSN gap: from_lsn 450 does not match to_lsn 400 of parent I2",
	}, got)
}

func TestParentLoop(t *testing.T) {
	f := newFixture(t)
	f.add("a", manifest.TypeIncremental, "b", 0, 0, 0)
	f.add("b", manifest.TypeIncremental, "a", 0, 0, 1)
	f.add("self", manifest.TypeIncremental, "self", 5, 5, 2)
	rep := f.verify("a")
	assert.Equal(t, []string{"a", "b"}, rep.Checked)
	require.Len(t, rep.Problems, 2)
	assert.Contains(t, rep.Problems[0].What, "loops back to a")
	assert.Contains(t, rep.Problems[1].What, "loops back to b")

	rep = f.verify("self")
	assert.Equal(t, []string{"self"}, rep.Checked)
	require.Len(t, rep.Problems, 1)
	assert.Contains(t, rep.Problems[0].What, "loops back to self")
}

func TestVerifyIncrementalChecksItsChain(t *testing.T) {
	f := newFixture(t)
	f.chain()
	f.replace(f.chunkKey("F", 3), func(b []byte) []byte { b[0] ^= 0xff; return b })
	f.replace(f.chunkKey("I1", 0), func(b []byte) []byte { b[0] ^= 0xff; return b })

	rep := f.verify("I2")
	assert.Equal(t, []string{"F", "D", "I2"}, rep.Checked)
	assert.Equal(t, 12, rep.Chunks)
	assert.False(t, rep.OK(), "the incremental is only as good as its full")
	require.Len(t, rep.Problems, 1)
	assert.Equal(t, "F", rep.Problems[0].BackupID)
	assert.Equal(t, 3, rep.Problems[0].Chunk)

	// Several IDs: the union of their chains, each backup checked once.
	rep = f.verify("I1", "I2", "F")
	assert.Equal(t, []string{"F", "I1", "D", "I2"}, rep.Checked)
	require.Len(t, rep.Problems, 2)
	assert.Equal(t, []string{"F", "I1"}, []string{rep.Problems[0].BackupID, rep.Problems[1].BackupID})

	rep = f.verify("F2")
	assert.Equal(t, []string{"F2"}, rep.Checked)
	assert.True(t, rep.OK())
}

func TestProblemsSorted(t *testing.T) {
	f := newFixture(t)
	f.chain()
	ctx := context.Background()
	for _, k := range []string{f.chunkKey("I2", 3), f.chunkKey("I2", 0), f.chunkKey("D", 2), f.chunkKey("F", 1)} {
		require.NoError(t, f.b.Delete(ctx, k))
	}
	f.add("X", manifest.TypeIncremental, "missing", 1, 2, 1)
	require.NoError(t, f.b.Delete(ctx, f.chunkKey("X", 2)))

	rep := f.verify()
	var got []string
	for _, p := range rep.Problems {
		got = append(got, fmt.Sprintf("%s/%d", p.BackupID, p.Chunk))
	}
	assert.Equal(t, []string{"D/2", "F/1", "I2/0", "I2/3", "X/-1", "X/2"}, got)
}

func TestUnverifiableManifest(t *testing.T) {
	f := newFixture(t)
	f.add("F", manifest.TypeFull, "", 0, 1, 0)
	m, err := f.r.ReadManifest(context.Background(), instance, "F")
	require.NoError(t, err)
	m.BackupID = "weird"
	m.Compression = "lzma" // not a codec
	require.NoError(t, f.r.WriteManifest(context.Background(), m))

	rep := f.verify("weird")
	require.Len(t, rep.Problems, 1)
	p := rep.Problems[0]
	assert.Equal(t, -1, p.Chunk)
	assert.Equal(t, repo.ManifestKey(instance, "weird"), p.Key)
	assert.Contains(t, p.What, "cannot verify")
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	f.chain()
	ctx := context.Background()

	_, err := verify.Backups(ctx, f.r, instance, []string{"F", "nope"}, 0, nil)
	require.ErrorIs(t, err, repo.ErrBackupNotFound)
	assert.ErrorContains(t, err, `backup "nope" of instance "db1" not found`)

	_, err = verify.Backups(ctx, f.r, "bad/instance", nil, 0, nil)
	assert.Error(t, err)
	_, err = verify.Backups(ctx, nil, instance, nil, 0, nil)
	assert.Error(t, err)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = verify.Backups(cctx, f.r, instance, nil, 0, nil)
	assert.ErrorIs(t, err, context.Canceled)

	// Cancelled during verification: an error, not a report of unread chunks.
	cctx, cancel = context.WithCancel(ctx)
	defer cancel()
	rep, err := verify.Backups(cctx, f.r, instance, nil, 1, func(id string, done, total int) {
		if done == 2 {
			cancel()
		}
	})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, rep)

	var nilReport *verify.Report
	assert.False(t, nilReport.OK())
}
