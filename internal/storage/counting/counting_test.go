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
