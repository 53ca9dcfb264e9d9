package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeater records the latest progress as heartbeat details: whenever
// progress changes (the SDK throttles the calls) and on a ticker, so that a
// quiet phase (a long --prepare) still proves the agent is alive.
type heartbeater struct {
	mu      sync.Mutex
	details any
	stop    chan struct{}
	done    chan struct{}
}

func startHeartbeat(ctx context.Context, every time.Duration, initial any) *heartbeater {
	return startHeartbeatTick(ctx, every, initial, nil)
}

// startHeartbeatTick is startHeartbeat that also calls tick (when not nil)
// on every tick, after the heartbeat: for work that must go on while the
// activity lives, such as renewing a backup's lease.
func startHeartbeatTick(ctx context.Context, every time.Duration, initial any, tick func()) *heartbeater {
	h := &heartbeater{details: initial, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				h.mu.Lock()
				d := h.details
				h.mu.Unlock()
				activity.RecordHeartbeat(ctx, d)
				if tick != nil {
					tick()
				}
			}
		}
	}()
	return h
}

// update records new progress and heartbeats it.
func (h *heartbeater) update(ctx context.Context, details any) {
	h.mu.Lock()
	h.details = details
	h.mu.Unlock()
	activity.RecordHeartbeat(ctx, details)
}

func (h *heartbeater) close() {
	close(h.stop)
	<-h.done
}
