package workers

import (
	"context"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/schedule"
)

// NewPolicyWorker is NewWorker following the live config of w: its
// activities read the policy when they start, and when the file changes
// the Temporal Schedules are applied again to match it (the diff is
// logged). Run w (w.Run) for the file to be watched.
func NewPolicyWorker(c client.Client, w *config.Watcher, r *repo.Repo, log *zap.Logger) worker.Worker {
	wk := newWorker(c, w.Current(), r, w)
	w.OnChange(func(old, cur *config.Config) { ReapplySchedules(c, cur, log) })
	return wk
}

// ReapplySchedules applies cfg's schedule policy and logs what changed.
func ReapplySchedules(c client.Client, cfg *config.Config, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	changes, err := schedule.Apply(ctx, c.ScheduleClient(), cfg, false)
	for _, ch := range changes {
		if ch.Op != schedule.Unchanged {
			log.Info("schedule re-applied after a policy change", zap.String("op", string(ch.Op)), zap.String("schedule", ch.ID), zap.String("policy", ch.Summary))
		}
	}
	if err != nil {
		log.Error("could not apply the schedules of the new policy; run `strata schedule apply`", zap.Error(err))
	}
}

// FollowPolicy makes the agent follow the live config of w: backups and
// restores read their instance's settings (compression, throttle, ...)
// when they start, and a reload changes the agent's bandwidth limit and
// its number of heavy slots for work that starts afterwards. Call it
// before Start; run w (w.Run) for the file to be watched.
func (a *Agent) FollowPolicy(w *config.Watcher) {
	a.Activities.Policy = w
	w.OnChange(func(old, cur *config.Config) {
		a.Activities.Limiter.SetLimit(int64(cur.Agent.BandwidthLimit))
		a.Slots.SetLimit(cur.Agent.MaxConcurrentHeavy)
	})
}
