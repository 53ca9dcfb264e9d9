package workers

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/workflows"
)

// LimiterStatus queries the limiter of every fleet-wide limit the config
// sets (fleet.max_concurrent_backups, fleet.max_concurrent_restores,
// storage.max_concurrent): its limit, holders and waiters. A limiter that
// has not run yet (no work asked for a permit) is reported empty.
func LimiterStatus(ctx context.Context, c client.Client, cfg *config.Config) ([]activities.LimiterState, error) {
	var out []activities.LimiterState
	for _, l := range activities.Limits(cfg) {
		id := workflows.LimiterWorkflowID(l.Scope, l.Name)
		st := activities.LimiterState{ID: id, Max: l.Max, Holders: []activities.Permit{}, Waiters: []activities.Permit{}}
		v, err := c.QueryWorkflow(ctx, id, "", activities.LimiterStatusQuery)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
		case err != nil:
			return nil, fmt.Errorf("query limiter %s: %w", id, err)
		default:
			if err := v.Get(&st); err != nil {
				return nil, fmt.Errorf("decode the state of limiter %s: %w", id, err)
			}
		}
		st.Max = l.Max // the configured limit (the limiter learns a change from the next request)
		out = append(out, st)
	}
	return out, nil
}

// InstanceStatus queries instance's entity workflow; nil when it has not
// run yet.
func InstanceStatus(ctx context.Context, c client.Client, instance string) (*workflows.InstanceStatus, error) {
	v, err := c.QueryWorkflow(ctx, workflows.InstanceWorkflowID(instance), "", workflows.InstanceStatusQuery)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("query the entity of %s: %w", instance, err)
	}
	var st workflows.InstanceStatus
	if err := v.Get(&st); err != nil {
		return nil, err
	}
	return &st, nil
}
