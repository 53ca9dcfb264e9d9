package counting

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return New(memory.New()) })
}

func TestCountsAndFailures(t *testing.T) {
	ctx := context.Background()
	b := New(memory.New())
	for i := 0; i < 2500; i++ {
		require.NoError(t, b.Put(ctx, fmt.Sprintf("p/%05d", i), bytes.NewReader([]byte("x")), 1))
	}
	_, err := b.List(ctx, "p/")
	require.NoError(t, err)
	_, err = b.List(ctx, "none/")
	require.NoError(t, err)
	r, err := b.Get(ctx, "p/00001")
	require.NoError(t, err)
	r.Close()
	c := b.Counts()
	assert.Equal(t, Counts{Put: 2500, Get: 1, List: 2, ListPages: 4}, c)
	assert.Equal(t, 2505, c.Requests())

	b.Reset()
	b.FailAfter(2)
	require.NoError(t, b.Delete(ctx, "p/00000"))
	require.NoError(t, b.Put(ctx, "q/1", bytes.NewReader([]byte("x")), 1))
	require.ErrorIs(t, b.Delete(ctx, "p/00001"), ErrInjected)
	require.ErrorIs(t, b.Put(ctx, "q/2", bytes.NewReader([]byte("x")), 1), ErrInjected)
	_, err = b.B.Stat(ctx, "p/00001")
	require.NoError(t, err, "a failed write does not reach the backend")
	_, err = b.B.Stat(ctx, "q/2")
	require.Error(t, err)
}

// onlyList hides the wrapped backend's ListDir.
type onlyList struct{ storage.Backend }

// TestListDirPages: a one-level listing costs a page per 1,000 entries
// when the backend lists one level, and the full listing's pages when it
// falls back to List.
func TestListDirPages(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	for d := 0; d < 3; d++ {
		for i := 0; i < 1200; i++ {
			require.NoError(t, mem.Put(ctx, fmt.Sprintf("b/%d/%05d", d, i), bytes.NewReader([]byte("x")), 1))
		}
	}
	for _, tc := range []struct {
		b     storage.Backend
		pages int
	}{{mem, 1}, {onlyList{mem}, 4}} {
		c := New(tc.b)
		objs, dirs, err := storage.ListDir(ctx, c, "b/")
		require.NoError(t, err)
		assert.Empty(t, objs)
		assert.Equal(t, []string{"b/0/", "b/1/", "b/2/"}, dirs)
		assert.Equal(t, Counts{List: 1, ListPages: tc.pages}, c.Counts(), "%T", tc.b)
	}
}
