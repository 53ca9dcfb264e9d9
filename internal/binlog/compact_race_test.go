package binlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// hooked wraps a backend with hooks run after a call.
type hooked struct {
	storage.Backend
	afterDelete func(key string)
	afterList   func(prefix string)
	beforeGet   func(ctx context.Context, key string) error
	failDelete  bool
}

func (h *hooked) Delete(ctx context.Context, key string) error {
	if h.failDelete {
		return errors.New("injected delete failure")
	}
	err := h.Backend.Delete(ctx, key)
	if h.afterDelete != nil {
		h.afterDelete(key)
	}
	return err
}

func (h *hooked) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	objs, err := h.Backend.List(ctx, prefix)
	if h.afterList != nil {
		h.afterList(prefix)
	}
	return objs, err
}

func (h *hooked) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if h.beforeGet != nil {
		if err := h.beforeGet(ctx, key); err != nil {
			return nil, err
		}
	}
	return h.Backend.Get(ctx, key)
}

// Two compactions of one roll-up (same PackSize), the second with an index
// read before the first's pack and a data listing after some of its
// deletes: their packs overlap in different cuts, and every segment is
// still in a pack the index uses, its bytes readable.
func TestOverlappingCompactionsLeaveNoSegmentMissing(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	h := &hooked{Backend: mem}
	st := &Store{B: h, Instance: "i1"}
	want := compactArchive(t, st, 41, 40)
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	var size int64
	for _, seg := range ix.Segments[:10] {
		size += seg.StoredSize
	}
	st.PackSize = size
	stale, err := st.ReadTail(ctx) // B's index, read before A's pack
	require.NoError(t, err)
	b := &Store{B: mem, Instance: "i1", PackSize: size}
	once := sync.Once{}
	h.afterDelete = func(key string) {
		if strings.Contains(key, "/data/") && strings.HasPrefix(key[strings.Index(key, "/data/")+6:], "000000000007") {
			once.Do(func() {
				_, _ = b.Compact(ctx, stale)
			})
		}
	}
	_, err = st.Compact(ctx, ix)
	require.NoError(t, err, "a data object deleted by the other compaction is no problem")
	h.afterDelete = nil
	require.Greater(t, len(keys(t, mem, "i1/binlogs/pack/")), 4, "the packs of both compactions")
	assert.Len(t, keys(t, mem, "i1/binlogs/data/"), 1, "the open file's")

	r := &Store{B: mem, Instance: "i1", CheckAllData: true}
	rix, err := r.ReadIndex(ctx)
	require.NoError(t, err)
	var missing []uint64
	for _, s := range rix.Missing {
		missing = append(missing, s.Seq)
	}
	assert.Empty(t, missing)
	assert.Len(t, rix.Runs(), 1)
	for i := range rix.Segments {
		raw, err := r.ReadSegment(ctx, &rix.Segments[i])
		require.NoError(t, err)
		require.Equal(t, want[rix.Segments[i].Seq], raw)
	}
	for i := range rix.Segments[:40] {
		assert.NotEmpty(t, rix.Segments[i].PackKey(), "segment %d", rix.Segments[i].Seq)
	}
}

// A reader's index: its records are listed as the tail, then the file is
// rolled up and compacted between the listing of packs and that of data:
// its segments are not missing.
func TestFileRolledUpAndPackedDuringReadIndexIsNotMissing(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	st := &Store{B: mem, Instance: "i1"}
	_, err := Synthetic{Segments: 45, PerFile: 40, SegmentEvents: 200, Start: synthStart, Distinct: true}.Generate(ctx, st)
	require.NoError(t, err)
	h := &hooked{Backend: mem}
	once := sync.Once{}
	h.afterList = func(prefix string) {
		if strings.HasSuffix(prefix, "/pack/") {
			once.Do(func() {
				ix, err := st.ReadTail(ctx)
				require.NoError(t, err)
				_, err = st.RollUp(ctx, ix)
				require.NoError(t, err)
				ix, err = st.ReadTail(ctx)
				require.NoError(t, err)
				_, err = st.Compact(ctx, ix)
				require.NoError(t, err)
			})
		}
	}
	r := &Store{B: h, Instance: "i1"}
	ix, err := r.ReadIndex(ctx)
	require.NoError(t, err)
	assert.Empty(t, ix.Missing, "gaps: %v", ix.Gaps)
	assert.Empty(t, ix.Gaps)
	for i := range ix.Segments[:40] {
		_, err := r.ReadSegment(ctx, &ix.Segments[i])
		require.NoError(t, err)
	}
}

// A reader waiting for a pack another reader fetches does not take that
// reader's cancellation: it fetches the pack itself.
func TestPackCacheWaiterDoesNotShareACancellation(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	st := &Store{B: mem, Instance: "i1"}
	want := compactArchive(t, st, 41, 40)
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix)
	require.NoError(t, err)

	started := make(chan struct{})
	var first sync.Once
	h := &hooked{Backend: mem, beforeGet: func(ctx context.Context, key string) error {
		if !strings.Contains(key, "/pack/") {
			return nil
		}
		block := false
		first.Do(func() { block = true })
		if block {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	r := &Store{B: h, Instance: "i1"}
	rix, err := r.ReadIndex(ctx)
	require.NoError(t, err)
	c1, cancel1 := context.WithCancel(ctx)
	go func() { _, _ = r.ReadSegment(c1, &rix.Segments[0]) }()
	<-started
	done := make(chan error, 1)
	var raw []byte
	go func() {
		var err error
		raw, err = r.ReadSegment(ctx, &rix.Segments[1])
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel1()
	select {
	case err := <-done:
		require.NoError(t, err)
		assert.Equal(t, want[rix.Segments[1].Seq], raw)
	case <-time.After(10 * time.Second):
		t.Fatal("the second reader is stuck")
	}
}

// A pack damaged in the bucket after an earlier compaction of the same
// Store read it (and could have cached it) makes no data object go: the
// pack is checked in storage before each delete.
func TestCompactChecksThePackInStorageNotACache(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	h := &hooked{Backend: mem}
	st := &Store{B: h, Instance: "i1"}
	want := compactArchive(t, st, 41, 40)
	h.failDelete = true
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix) // pack written, first delete fails
	require.Error(t, err)
	ix, err = st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix) // pack checked (cached), delete fails again
	require.Error(t, err)
	// The pack is damaged in the bucket.
	key := st.packKey(1, 40)
	good := get(t, mem, key)
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 0xff
	require.NoError(t, mem.Delete(ctx, key))
	require.NoError(t, mem.Put(ctx, key, bytes.NewReader(bad), int64(len(bad))))
	h.failDelete = false
	ix, err = st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix)
	require.NoError(t, err, "the damaged segment is packed anew from its data object")
	r := &Store{B: mem, Instance: "i1"}
	rix, err := r.ReadIndex(ctx)
	require.NoError(t, err)
	lost := 0
	for i := range rix.Segments {
		raw, err := r.ReadSegment(ctx, &rix.Segments[i])
		if err != nil || !bytes.Equal(raw, want[rix.Segments[i].Seq]) {
			lost++
		}
	}
	assert.Zero(t, lost, "data objects deleted on the strength of a cached copy of a pack now damaged")
}

// After a compaction, ix lists each pack once.
func TestCompactListsEachPackOnce(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	st := &Store{B: mem, Instance: "i1"}
	compactArchive(t, st, 41, 40)
	ix, err := st.ReadTail(ctx)
	require.NoError(t, err)
	var size int64
	for _, seg := range ix.Segments[:20] {
		size += seg.StoredSize
	}
	st.PackSize = size
	// a first compaction writes the first pack only (stop after its deletes)
	h := &hooked{Backend: mem}
	st.B = h
	cctx, cancel := context.WithCancel(ctx)
	h.afterDelete = func(key string) {
		if strings.Contains(key, "/data/000000000020") {
			cancel()
		}
	}
	_, _ = st.Compact(cctx, ix)
	h.afterDelete = nil
	ix, err = st.ReadTail(ctx)
	require.NoError(t, err)
	_, err = st.Compact(ctx, ix)
	require.NoError(t, err)
	seen := map[string]int{}
	for _, p := range ix.Packs {
		seen[p.Key]++
	}
	for k, n := range seen {
		assert.Equal(t, 1, n, "ix.Packs holds %s %d times", k, n)
	}
}
