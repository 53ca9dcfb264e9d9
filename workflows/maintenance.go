package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/verify"
)

// Workflow type names of the maintenance workflows.
const (
	VerifyWorkflowName    = "VerifyWorkflow"
	RetentionWorkflowName = "RetentionWorkflow"
)

// VerifyRequest asks to verify one backup (and its chain) or all of an
// instance's backups.
type VerifyRequest = activities.VerifyRequest

// VerifyResult is the verification report; OK is false when any problem was found.
type VerifyResult struct {
	OK     bool          `json:"ok"`
	Report verify.Report `json:"report"`
}

// longCatalogCtx is for catalog activities that read a whole repository.
func longCatalogCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy:         retry,
		WaitForCancellation: true,
	})
}

// VerifyWorkflow reads back every chunk of the requested backups and checks
// sizes, sha256s, parents and LSN continuity. It completes with a report;
// problems in the repository do not fail the workflow.
func VerifyWorkflow(ctx workflow.Context, req VerifyRequest) (*VerifyResult, error) {
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	var cat *activities.Catalog
	var rep verify.Report
	if err := workflow.ExecuteActivity(longCatalogCtx(ctx), cat.VerifyBackups, req).Get(ctx, &rep); err != nil {
		return nil, err
	}
	if len(rep.Problems) > 0 {
		workflow.GetLogger(ctx).Warn("verify found problems", "problems", len(rep.Problems))
	}
	return &VerifyResult{OK: rep.OK(), Report: rep}, nil
}

// RetentionRequest asks to apply an instance's retention policy.
type RetentionRequest = activities.RetentionRequest

// RetentionResult reports the plan and what was deleted.
type RetentionResult struct {
	Plan   activities.RetentionPlan   `json:"plan"`
	Result activities.RetentionResult `json:"result"`
}

// RetentionWorkflow plans and applies the retention policy: expired backups
// are deleted children first, never one a retained backup depends on (nor,
// unless the request allows it, the newest restorable chain), abandoned
// partial uploads older than the grace period are removed, and the binlog
// archive is pruned of what no retained backup's recovery window needs. If
// a new backup lands between plan and deletion, it plans again.
func RetentionWorkflow(ctx workflow.Context, req RetentionRequest) (*RetentionResult, error) {
	if req.Instance == "" {
		return nil, invalid("instance is required")
	}
	var cat *activities.Catalog
	res := &RetentionResult{}
	for attempt := 1; ; attempt++ {
		if err := workflow.ExecuteActivity(catalogCtx(ctx), cat.PlanRetention, req).Get(ctx, &res.Plan); err != nil {
			return nil, err
		}
		applyCtx := longCatalogCtx(ctx)
		if t := res.Plan.HeartbeatTimeout; t > 0 {
			// A worker that dies while pruning is noticed as soon as an
			// agent's would be; ApplyRetention heartbeats all along.
			applyCtx = workflow.WithHeartbeatTimeout(applyCtx, t)
		}
		err := workflow.ExecuteActivity(applyCtx, cat.ApplyRetention, activities.ApplyRequest{
			Instance: req.Instance, Plan: res.Plan, DryRun: req.DryRun,
		}).Get(ctx, &res.Result)
		var ae *temporal.ApplicationError
		if err != nil && errors.As(err, &ae) && ae.Type() == activities.ErrStalePlan && attempt < 3 {
			workflow.GetLogger(ctx).Info("catalog changed while pruning; planning again")
			continue
		}
		if err != nil {
			return nil, err
		}
		return res, nil
	}
}
