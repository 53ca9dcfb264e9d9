package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/preflight"
)

// preflightMargin is the time an attempt of the pre-flight check gets
// beyond its budget: the last check and the connection.
const preflightMargin = 2 * time.Minute

// PreflightParams names the instance to check before a backup.
type PreflightParams struct {
	Instance string `json:"instance"`
}

// PreflightResult is the outcome of a pre-flight check that let the backup
// go; while it waits, its heartbeat details are a preflight.Progress (the
// figures of the last check and what blocks).
type PreflightResult struct {
	Skipped bool          `json:"skipped,omitempty"` // backup.preflight.enabled: false
	Checked int           `json:"checked"`
	Waited  time.Duration `json:"waited"`
	// Sample is the last check's figures, without the transactions'
	// statements (they may hold data: only a blocking one is named, in
	// the error and the heartbeat); OpenTrxs counts them.
	Sample   preflight.Sample `json:"sample"`
	OpenTrxs int              `json:"open_trxs"`
}

// Preflight checks the source server of a backup before the backup takes
// any lock: open transactions, threads running, replication lag and the
// free disk of the agent's scratch directory, against the instance's
// backup.preflight thresholds. While one is exceeded it checks again every
// recheck, heartbeating the progress, until the budget has passed; then it
// fails with PreflightBlocked naming what blocked. A retried attempt goes on
// with the budget of the first (from the heartbeat details).
func (a *Agent) Preflight(ctx context.Context, p PreflightParams) (*PreflightResult, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance))
	in, err := a.instance(p.Instance)
	if err != nil {
		return nil, err
	}
	pf := in.Backup.Preflight
	if !pf.On() {
		return &PreflightResult{Skipped: true}, nil
	}
	db, si, _, err := openSource(ctx, in)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	scratch := a.scratchRoot()
	th := preflight.Thresholds{MaxTrxAge: pf.MaxTrxAge.Std(), MaxThreadsRunning: pf.MaxThreadsRunning,
		MaxReplicationLag: pf.MaxReplicationLag.Std(), MinFreeDisk: int64(pf.MinFreeDisk)}

	var start preflight.Progress
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &start)
	}
	hb := startHeartbeat(ctx, a.heartbeatEvery(), start)
	defer hb.close()
	var last []preflight.Block
	prog, err := preflight.Wait(ctx, th, pf.Budget.Std(), pf.Recheck.Std(), start,
		func(ctx context.Context) (preflight.Sample, error) {
			return preflight.Measure(ctx, db, si.Server(), scratch)
		},
		func(p preflight.Progress) {
			hb.update(ctx, p)
			if len(p.Blocks) > 0 && preflight.Summary(p.Blocks) != preflight.Summary(last) {
				log.Info("pre-flight check waits", zap.String("blocked", preflight.Summary(p.Blocks)))
			}
			last = p.Blocks
		},
		time.Now, preflight.Sleep)
	var be *preflight.BlockedError
	if errors.As(err, &be) {
		return nil, fail(ErrPreflightBlocked, "instance %s: %v; the backup took no lock. Wait for the load to pass (or end the "+
			"transaction), or raise the threshold or the budget in backup.preflight (backup.preflight.enabled: false skips the check), then run again",
			p.Instance, be)
	}
	if err != nil {
		return nil, classify(err)
	}
	res := &PreflightResult{Checked: prog.Checked, Waited: time.Since(prog.Started), Sample: prog.Sample, OpenTrxs: len(prog.Sample.Trxs)}
	res.Sample.Trxs = nil
	return res, nil
}
