package workers

import (
	"context"
	"sync"

	"go.temporal.io/sdk/worker"
)

// Slots is an activity slot supplier whose size can change while the
// worker runs: agent.max_concurrent is applied to activities that start
// after a policy reload; running ones keep their slots (lowering the limit
// waits for them to finish before a new one starts).
type Slots struct {
	mu      sync.Mutex
	limit   int
	used    int
	changed chan struct{} // closed and replaced when limit or used change
}

// NewSlots returns a supplier of n slots (n < 1 means 1).
func NewSlots(n int) *Slots {
	s := &Slots{changed: make(chan struct{})}
	s.SetLimit(n)
	return s
}

// SetLimit changes the number of slots.
func (s *Slots) SetLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = max(n, 1)
	s.wake()
}

// Limit returns the number of slots.
func (s *Slots) Limit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

func (s *Slots) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ReserveSlot blocks until a slot is free.
func (s *Slots) ReserveSlot(ctx context.Context, _ worker.SlotReservationInfo) (*worker.SlotPermit, error) {
	for {
		s.mu.Lock()
		if s.used < s.limit {
			s.used++
			s.mu.Unlock()
			return &worker.SlotPermit{}, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// TryReserveSlot takes a slot if one is free.
func (s *Slots) TryReserveSlot(worker.SlotReservationInfo) *worker.SlotPermit {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used < s.limit {
		s.used++
		return &worker.SlotPermit{}
	}
	return nil
}

// MarkSlotUsed does nothing: a reserved slot counts from its reservation.
func (s *Slots) MarkSlotUsed(worker.SlotMarkUsedInfo) {}

// ReleaseSlot frees a slot.
func (s *Slots) ReleaseSlot(worker.SlotReleaseInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used--
	s.wake()
}

// MaxSlots is 0: the limit may change.
func (s *Slots) MaxSlots() int { return 0 }

// tuner returns a worker tuner whose activity slots are s.
func (s *Slots) tuner() (worker.WorkerTuner, error) {
	fixed := func() worker.SlotSupplier {
		f, _ := worker.NewFixedSizeSlotSupplier(1000)
		return f
	}
	return worker.NewCompositeTuner(worker.CompositeTunerOptions{
		WorkflowSlotSupplier:        fixed(),
		ActivitySlotSupplier:        s,
		LocalActivitySlotSupplier:   fixed(),
		NexusSlotSupplier:           fixed(),
		SessionActivitySlotSupplier: fixed(),
	})
}
