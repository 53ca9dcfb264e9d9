package binlog

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/storage/memory"
)

func TestOverlappingArchiversNeverMixASegment(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	a1, a2 := &Store{B: b, Instance: "i"}, &Store{B: b, Instance: "i"}
	ev1, ev2 := []byte(strings.Repeat("a", 100)), []byte(strings.Repeat("b", 100))
	s1 := &Segment{Seq: 1, File: "binlog.000001", Start: 4, End: 104}
	s2 := &Segment{Seq: 1, File: "binlog.000001", Start: 4, End: 104}
	require.NoError(t, a1.WriteSegment(ctx, s1, ev1))
	err := a2.WriteSegment(ctx, s2, ev2)
	require.True(t, errors.Is(err, ErrConflict), "%v", err)

	ix, err := a1.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Segments, 1)
	got, err := a1.ReadSegment(ctx, &ix.Segments[0])
	require.NoError(t, err)
	assert.Equal(t, ev1, got, "the segment is the winner's, data and index alike")

	// A leftover of the loser under a number the index has is removed.
	require.NoError(t, b.Put(ctx, "i/binlogs/data/000000000001-deadbeef.zst", strings.NewReader("x"), 1))
	require.NoError(t, a1.RemoveOrphans(ctx, ix))
	objs, err := b.List(ctx, "i/binlogs/data/")
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, a1.segmentDataKey(&ix.Segments[0]), objs[0].Key)
}
