package workers

import (
	"context"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/metrics/catalog"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/workflows"
)

// RunMetrics keeps the worker's gauges current until ctx ends: those read
// from the catalog (catalog.Refresher) and the fleet limiters' queue depth
// and permits in use. It refreshes at once, then every
// metrics.refresh_interval of the live config, and right after a workflow
// of RefreshAfterWorkflows (a backup) completes on this worker: that
// refresh looks again at the instance's partial backups and archive (and,
// after a retention, reads its catalog in full; catalog.Refresher.MarkChanged).
func RunMetrics(ctx context.Context, c client.Client, policy *config.Watcher, r *repo.Repo, log *zap.Logger) {
	ref := &catalog.Refresher{Repo: r, Config: policy.Current, Log: log}
	limits := map[string]bool{}
	for {
		cfg := policy.Current()
		every := cfg.Metrics.RefreshInterval.Std()
		if every <= 0 {
			every = config.DefaultMetricsRefresh
		}
		for _, ch := range metrics.TakeCatalogChanges() {
			ref.MarkChanged(ch.Instance, ch.Deleted)
		}
		rctx, cancel := context.WithTimeout(ctx, max(every, 30*time.Second))
		if err := ref.Refresh(rctx); err != nil && ctx.Err() == nil {
			log.Warn("metrics: could not refresh the catalog's gauges", zap.Error(err))
		}
		if err := refreshLimits(rctx, c, cfg, limits); err != nil && ctx.Err() == nil {
			log.Warn("metrics: could not query the fleet limiters", zap.Error(err))
		}
		cancel()
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-metrics.BackupCompletions():
			t.Stop()
		}
	}
}

// LimitLabel is the limit label of a fleet-wide limit: backups, restores
// (fleet.max_concurrent_*) or storage (storage.max_concurrent).
func LimitLabel(l activities.Limit) string {
	if l.Scope == "storage" {
		return "storage"
	}
	return l.Name + "s"
}

// refreshLimits sets the gauges of every configured limit and removes
// those of limits no longer set (shown keeps the labels set).
func refreshLimits(ctx context.Context, c client.Client, cfg *config.Config, shown map[string]bool) error {
	states, err := LimiterStatus(ctx, c, cfg)
	if err != nil {
		return err
	}
	now := map[string]bool{}
	for i, l := range activities.Limits(cfg) {
		if i >= len(states) {
			break
		}
		label := LimitLabel(l)
		now[label] = true
		metrics.SetFleetLimit(label, len(states[i].Waiters), len(states[i].Holders))
	}
	for label := range shown {
		if !now[label] {
			metrics.ClearFleetLimit(label)
			delete(shown, label)
		}
	}
	for label := range now {
		shown[label] = true
	}
	return nil
}

// RefreshAfterWorkflows are the workflow types whose completion on this
// worker refreshes the catalog-derived gauges at once: they change the
// catalog (a backup's manifest, the backups retention deleted, a drill's
// report and the backup it marked). The value says whether the workflow
// deletes from the catalog: the refresh then reads the instance's catalog
// in full.
var RefreshAfterWorkflows = map[string]bool{
	workflows.BackupWorkflowName:    false,
	workflows.RetentionWorkflowName: true,
	workflows.DrillWorkflowName:     false,
}

// completions tells the metrics loop when a workflow of
// RefreshAfterWorkflows completes on this worker, outside replay.
type completions struct {
	interceptor.WorkerInterceptorBase
}

func (*completions) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &completionsInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}}
}

type completionsInbound struct {
	interceptor.WorkflowInboundInterceptorBase
}

func (w *completionsInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (interface{}, error) {
	res, err := w.Next.ExecuteWorkflow(ctx, in)
	deletes, refresh := RefreshAfterWorkflows[workflow.GetInfo(ctx).WorkflowType.Name]
	if err == nil && !workflow.IsReplaying(ctx) && refresh {
		// The instance, from the search attribute every Strata workflow
		// carries ("" when absent: every instance is looked at again).
		instance, _ := workflow.GetTypedSearchAttributes(ctx).GetKeyword(workflows.SAInstance)
		metrics.CatalogChanged(instance, deletes) //workflowcheck:ignore a non-blocking send to the refresh loop, no command: replay is unaffected
	}
	return res, err
}
