package retention_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/retention"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// store writes each backup of catalog into b: two chunk objects, then the
// manifest.
func store(t *testing.T, b storage.Backend, catalog []*manifest.Manifest) *repo.Repo {
	t.Helper()
	ctx := context.Background()
	r := repo.New(b)
	for _, m := range catalog {
		m := *m
		m.Chunks, m.RawSize, m.StoredSize = nil, 0, 0
		for i := range 2 {
			data := []byte("chunk " + m.BackupID + string(rune('0'+i)))
			key := "chunks/0000000" + string(rune('0'+i)) + ".zst"
			require.NoError(t, b.Put(ctx, repo.BackupPrefix(m.Instance, m.BackupID)+key, bytes.NewReader(data), int64(len(data))))
			sum := sha256.Sum256(data)
			m.Chunks = append(m.Chunks, manifest.Chunk{Index: i, Key: key, RawSize: int64(len(data)), StoredSize: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
			m.RawSize += int64(len(data))
			m.StoredSize += int64(len(data))
		}
		require.NoError(t, r.WriteManifest(ctx, &m))
	}
	return r
}

func listedIDs(t *testing.T, r *repo.Repo) []string {
	t.Helper()
	list, err := r.ListBackups(context.Background(), instance)
	require.NoError(t, err)
	out := []string{}
	for _, m := range list {
		out = append(out, m.BackupID)
	}
	return out
}

func keys(t *testing.T, b storage.Backend, prefix string) []string {
	t.Helper()
	objs, err := b.List(context.Background(), prefix)
	require.NoError(t, err)
	out := []string{}
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

// checkChains fails if a listed backup's parent is not listed.
func checkChains(t *testing.T, r *repo.Repo) {
	t.Helper()
	list, err := r.ListBackups(context.Background(), instance)
	require.NoError(t, err)
	listed := make(map[string]bool)
	for _, m := range list {
		listed[m.BackupID] = true
	}
	for _, m := range list {
		if m.Type != manifest.TypeFull {
			assert.True(t, listed[m.ParentID], "listed backup %s has lost its parent %s", m.BackupID, m.ParentID)
		}
	}
}

func TestExecute(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	catalog := nightly(5)
	r := store(t, b, catalog)
	list, err := r.ListBackups(ctx, instance)
	require.NoError(t, err)
	plan, err := retention.Compute(list, retention.Policy{KeepFull: 2}, lastEnd(5))
	require.NoError(t, err)
	require.Len(t, plan.Delete, 12)
	before := keys(t, b, "")

	// Dry run: nothing deleted, the plan's deletions returned and reported.
	var reported []retention.Action
	done, err := retention.Execute(ctx, r, instance, plan, true, func(a retention.Action) { reported = append(reported, a) })
	require.NoError(t, err)
	assert.Equal(t, plan.Delete, done)
	assert.Equal(t, plan.Delete, reported)
	assert.Equal(t, before, keys(t, b, ""))

	reported = nil
	done, err = retention.Execute(ctx, r, instance, plan, false, func(a retention.Action) {
		reported = append(reported, a)
		checkChains(t, r) // at every step
	})
	require.NoError(t, err)
	assert.Equal(t, plan.Delete, done)
	assert.Equal(t, plan.Delete, reported)
	assert.Equal(t, ids(plan.Keep), listedIDs(t, r))
	for _, a := range plan.Delete {
		assert.Empty(t, keys(t, b, repo.BackupPrefix(instance, a.BackupID)), "data of %s", a.BackupID)
	}
	for _, a := range plan.Keep {
		assert.Len(t, keys(t, b, repo.BackupPrefix(instance, a.BackupID)), 3, "objects of %s", a.BackupID)
	}
	partial, err := r.ListPartial(ctx, instance)
	require.NoError(t, err)
	assert.Empty(t, partial)

	// Executing the same plan again is harmless.
	_, err = retention.Execute(ctx, r, instance, plan, false, nil)
	require.NoError(t, err)
	assert.Equal(t, ids(plan.Keep), listedIDs(t, r))

	// An empty plan does nothing.
	done, err = retention.Execute(ctx, r, instance, &retention.Plan{}, false, nil)
	require.NoError(t, err)
	assert.Empty(t, done)
}

// crashingBackend fails every Delete after the first n.
type crashingBackend struct {
	*memory.Backend
	mu sync.Mutex
	n  int
}

var errCrash = errors.New("simulated crash")

func (c *crashingBackend) Delete(ctx context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return errCrash
	}
	c.n--
	return c.Backend.Delete(ctx, key)
}

// TestExecuteCrash interrupts Execute at every object deletion and checks
// that no listed backup ever loses its parent, and that the leftovers are a
// partial upload that GCPartial removes.
func TestExecuteCrash(t *testing.T) {
	ctx := context.Background()
	catalog := nightly(4)
	plan, err := retention.Compute(catalog, retention.Policy{KeepFull: 1}, lastEnd(4))
	require.NoError(t, err)
	total := len(plan.Delete) * 3 // per backup: manifest, two chunks
	for n := 0; n < total; n++ {
		cb := &crashingBackend{Backend: memory.New(), n: 1 << 30}
		r := store(t, cb, catalog)
		cb.n = n
		done, err := retention.Execute(ctx, r, instance, plan, false, nil)
		require.ErrorIs(t, err, errCrash, "crash after %d deletes", n)
		assert.Len(t, done, n/3)
		assert.Contains(t, err.Error(), plan.Delete[n/3].BackupID)
		checkChains(t, r)

		partial, err := r.ListPartial(ctx, instance)
		require.NoError(t, err)
		if n%3 == 0 {
			assert.Empty(t, partial, "crash before a manifest is deleted")
		} else {
			assert.Equal(t, []string{plan.Delete[n/3].BackupID}, partial, "crash between manifest and data")
		}

		// Recovery: the partial-upload GC, then a new plan.
		cb.n = 1 << 30
		removed, err := retention.GCPartial(ctx, r, instance, time.Minute, time.Now().Add(time.Hour), false)
		require.NoError(t, err)
		assert.Equal(t, partial, removed)
		list, err := r.ListBackups(ctx, instance)
		require.NoError(t, err)
		plan2, err := retention.Compute(list, retention.Policy{KeepFull: 1}, lastEnd(4))
		require.NoError(t, err)
		_, err = retention.Execute(ctx, r, instance, plan2, false, nil)
		require.NoError(t, err)
		assert.Equal(t, ids(plan.Keep), listedIDs(t, r))
		assert.Len(t, keys(t, cb, ""), 3*len(plan.Keep))
	}
}

func TestExecuteStalePlan(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	catalog := nightly(3)
	r := store(t, b, catalog)
	plan, err := retention.Compute(catalog, retention.Policy{KeepFull: 1}, lastEnd(3))
	require.NoError(t, err)
	before := keys(t, b, "")

	// A plan that deletes a parent before its child.
	reversed := &retention.Plan{Keep: plan.Keep, Delete: slices.Clone(plan.Delete)}
	slices.Reverse(reversed.Delete)
	_, err = retention.Execute(ctx, r, instance, reversed, false, nil)
	require.ErrorIs(t, err, retention.ErrStalePlan)
	assert.ErrorContains(t, err, "before backup")

	// A backup written since the plan was computed depends on one that the
	// plan deletes.
	late := mk(manifest.TypeIncremental, at(3, 6), catalog[2], catalog[2].ToLSN, 999999)
	store(t, b, []*manifest.Manifest{late})
	before = append(before, keys(t, b, repo.BackupPrefix(instance, late.BackupID))...)
	slices.Sort(before)
	for _, dry := range []bool{true, false} {
		done, err := retention.Execute(ctx, r, instance, plan, dry, nil)
		require.ErrorIs(t, err, retention.ErrStalePlan)
		assert.Empty(t, done)
		assert.ErrorContains(t, err, "backup "+late.BackupID+", which is kept, depends on backup "+catalog[2].BackupID)
	}
	assert.Equal(t, before, keys(t, b, ""), "nothing deleted")
}

func TestExecuteErrors(t *testing.T) {
	ctx := context.Background()
	r := store(t, memory.New(), nightly(2))
	plan, err := retention.Compute(nightly(2), retention.Policy{KeepFull: 1}, lastEnd(2))
	require.NoError(t, err)

	_, err = retention.Execute(ctx, nil, instance, plan, false, nil)
	assert.Error(t, err)
	_, err = retention.Execute(ctx, r, instance, nil, false, nil)
	assert.Error(t, err)
	_, err = retention.Execute(ctx, r, instance, &retention.Plan{Delete: []retention.Action{{}}}, false, nil)
	assert.ErrorContains(t, err, "no backup ID")
	_, err = retention.Execute(ctx, r, "bad/instance", plan, false, nil)
	assert.Error(t, err)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	done, err := retention.Execute(cctx, r, instance, plan, false, nil)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, done)
	assert.Len(t, listedIDs(t, r), 8)
}

// timedBackend reports chosen modification times for some objects, and can
// hide manifests from List (as if a backup completed between two listings).
type timedBackend struct {
	*memory.Backend
	modTimes      map[string]time.Time
	hideManifests bool
}

func (tb *timedBackend) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	objs, err := tb.Backend.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := objs[:0]
	for _, o := range objs {
		if tb.hideManifests && strings.HasSuffix(o.Key, "/"+manifest.FileName) {
			continue
		}
		if mt, ok := tb.modTimes[o.Key]; ok {
			o.ModTime = mt
		}
		out = append(out, o)
	}
	return out, nil
}

func putObj(t *testing.T, b storage.Backend, key string) {
	t.Helper()
	require.NoError(t, b.Put(context.Background(), key, bytes.NewReader([]byte("x")), 1))
}

func TestGCPartial(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	old, recent := now.Add(-2*time.Hour), now.Add(-10*time.Minute)
	tb := &timedBackend{Backend: memory.New(), modTimes: map[string]time.Time{}}
	r := store(t, tb, nightly(1)) // complete backups
	for _, k := range keys(t, tb, "") {
		tb.modTimes[k] = old
	}
	objects := map[string]time.Time{
		"db1/backups/p-old/chunks/00000000.zst":     old,
		"db1/backups/p-old/chunks/00000001.zst":     old.Add(time.Minute),
		"db1/backups/p-mixed/chunks/00000000.zst":   old,
		"db1/backups/p-mixed/chunks/00000001.zst":   recent, // still being written
		"db1/backups/p-recent/chunks/00000000.zst":  recent,
		"db1/backups/p-edge/chunks/00000000.zst":    now.Add(-time.Hour), // exactly the grace
		"db1/backups/p-unknown/chunks/00000000.zst": {},                  // no time reported
		"db2/backups/p-other/chunks/00000000.zst":   old,                 // another instance
	}
	for k, mt := range objects {
		putObj(t, tb, k)
		tb.modTimes[k] = mt
	}
	before := keys(t, tb, "")

	removed, err := retention.GCPartial(ctx, r, instance, time.Hour, now, true)
	require.NoError(t, err)
	assert.Equal(t, []string{"p-old"}, removed)
	assert.Equal(t, before, keys(t, tb, ""), "dry run deletes nothing")

	removed, err = retention.GCPartial(ctx, r, instance, time.Hour, now, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"p-old"}, removed)
	assert.Empty(t, keys(t, tb, "db1/backups/p-old/"))
	assert.Len(t, keys(t, tb, "db1/backups/p-mixed/"), 2)
	assert.Len(t, listedIDs(t, r), 4, "complete backups untouched")
	assert.Len(t, keys(t, tb, "db2/"), 1)

	// Later, the stalled uploads expire too.
	removed, err = retention.GCPartial(ctx, r, instance, time.Hour, now.Add(time.Hour), false)
	require.NoError(t, err)
	assert.Equal(t, []string{"p-edge", "p-mixed", "p-recent"}, removed)
	partial, err := r.ListPartial(ctx, instance)
	require.NoError(t, err)
	assert.Equal(t, []string{"p-unknown"}, partial)
	assert.Len(t, listedIDs(t, r), 4)
	assert.Len(t, keys(t, tb, repo.BackupsPrefix(instance)), 4*3+1)
}

// TestGCPartialRealTimes uses the memory backend's own modification times
// (the time of Put).
func TestGCPartialRealTimes(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := store(t, b, nightly(1))
	putObj(t, b, "db1/backups/partial/chunks/00000000.zst")

	removed, err := retention.GCPartial(ctx, r, instance, 24*time.Hour, time.Now(), false)
	require.NoError(t, err)
	assert.Empty(t, removed, "within the grace period")

	removed, err = retention.GCPartial(ctx, r, instance, 0, time.Now().Add(time.Millisecond), false)
	require.NoError(t, err)
	assert.Equal(t, []string{"partial"}, removed)
	assert.Empty(t, keys(t, b, "db1/backups/partial/"))
	assert.Len(t, listedIDs(t, r), 4)
	assert.Len(t, keys(t, b, ""), 4*3)
}

// TestGCPartialNeverTouchesManifests: a backup that completes between the
// listing and the deletion (simulated by hiding manifests from List) is left
// alone.
func TestGCPartialNeverTouchesManifests(t *testing.T) {
	ctx := context.Background()
	tb := &timedBackend{Backend: memory.New(), hideManifests: true}
	r := repo.New(tb)
	store(t, tb.Backend, nightly(1))
	before := keys(t, tb.Backend, "")
	partial, err := r.ListPartial(ctx, instance)
	require.NoError(t, err)
	require.Len(t, partial, 4, "manifests are hidden: the backups look partial")

	removed, err := retention.GCPartial(ctx, r, instance, 0, time.Now().Add(time.Hour), false)
	require.NoError(t, err)
	assert.Empty(t, removed)
	assert.Equal(t, before, keys(t, tb.Backend, ""))
}

func TestGCPartialErrors(t *testing.T) {
	ctx := context.Background()
	r := repo.New(memory.New())
	_, err := retention.GCPartial(ctx, nil, instance, 0, time.Now(), false)
	assert.Error(t, err)
	_, err = retention.GCPartial(ctx, r, instance, -time.Second, time.Now(), false)
	assert.ErrorContains(t, err, "negative")
	_, err = retention.GCPartial(ctx, r, "", time.Hour, time.Now(), false)
	assert.Error(t, err)

	putObj(t, r.Backend(), "db1/backups/p/chunks/00000000.zst")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = retention.GCPartial(cctx, r, instance, 0, time.Now().Add(time.Hour), false)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Len(t, keys(t, r.Backend(), ""), 1)
}
