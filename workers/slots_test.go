package workers

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSlotsResize(t *testing.T) {
	s := NewSlots(1)
	ctx := context.Background()
	_, err := s.ReserveSlot(ctx, nil)
	require.NoError(t, err)
	assert.Nil(t, s.TryReserveSlot(nil), "one slot, taken")

	got := make(chan struct{})
	go func() {
		if _, err := s.ReserveSlot(ctx, nil); err == nil {
			close(got)
		}
	}()
	s.SetLimit(2) // a reload raises agent.max_concurrent
	<-got         // the waiting reservation is granted without a release

	s.SetLimit(1) // lowered while two run: a new one waits for both
	s.ReleaseSlot(nil)
	assert.Nil(t, s.TryReserveSlot(nil), "one still runs, the limit is one")
	s.ReleaseSlot(nil)
	assert.NotNil(t, s.TryReserveSlot(nil))

	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = s.ReserveSlot(cctx, nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a reservation gives up with its context")
}
