package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// unavailable is a repository whose reads fail with a transient error.
type unavailable struct{ storage.Backend }

func (unavailable) Get(context.Context, string) (io.ReadCloser, error) {
	return nil, errors.New("503 service unavailable")
}

// backupFailures is strata_backups_total{instance, type, result="failure"}.
func backupFailures(t *testing.T, instance, typ string) float64 {
	t.Helper()
	mfs, err := metrics.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "strata_backups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["instance"] == instance && l["type"] == typ && l["result"] == metrics.ResultFailure {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// A failed attempt that Temporal will retry is not a failed backup in
// strata_backups_total (the retry may succeed, and StrataBackupsFailing
// would fire on a backup that completed); one that ends the backup (not
// retryable) is.
func TestBackupFailureCountedOnlyWhenFinal(t *testing.T) {
	cat := testCatalog(t, 0)
	a := &Agent{Host: "h1", Config: cat.Config, Repo: repo.New(unavailable{memory.New()})}

	before := backupFailures(t, "db1", manifest.TypeFull)
	_, err := runBackup(t, a, BackupParams{Instance: "db1", BackupID: "b1", Type: manifest.TypeFull})
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.False(t, ae.NonRetryable(), "a storage outage is retried: %v", err)
	assert.Equal(t, before, backupFailures(t, "db1", manifest.TypeFull), "a retried attempt is not a failed backup")

	_, err = runBackup(t, a, BackupParams{Instance: "db1", Type: manifest.TypeFull})
	require.Equal(t, ErrInvalidRequest, appErrType(err))
	assert.Equal(t, before+1, backupFailures(t, "db1", manifest.TypeFull), "a failure that is not retried ends the backup")
}

// An operator's cancel of the backup ends it, but is not a failure; an
// attempt that fails for good is.
func TestBackupCancelNotCountedAsFailure(t *testing.T) {
	cat := testCatalog(t, 0)
	a := &Agent{Host: "h1", Config: cat.Config, Repo: repo.New(unavailable{memory.New()})}
	before := backupFailures(t, "db1", manifest.TypeFull)

	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(temporal.NewCanceledError("cancelled by the operator"))
	_, err := a.Backup(ctx, BackupParams{Instance: "db1", BackupID: "b1", Type: manifest.TypeFull})
	require.Error(t, err)
	final, _ := finalFailure(ctx, err)
	require.True(t, final, "a cancel ends the backup (its partial upload is deleted)")
	assert.Equal(t, before, backupFailures(t, "db1", manifest.TypeFull), "a cancelled backup is not a failed one")

	// The same agent outside a cancel still counts a failure that ends the
	// backup.
	_, err = a.Backup(context.Background(), BackupParams{Instance: "db1", Type: manifest.TypeFull})
	require.Equal(t, ErrInvalidRequest, appErrType(err))
	assert.Equal(t, before+1, backupFailures(t, "db1", manifest.TypeFull))
}

// The retry policy's last attempt ends the backup; an attempt before it,
// or one of a policy without a maximum (the server's default), does not.
func TestAttemptsSpent(t *testing.T) {
	policy := &temporal.RetryPolicy{MaximumAttempts: 3}
	assert.False(t, attemptsSpent(activity.Info{Attempt: 1, RetryPolicy: policy}))
	assert.False(t, attemptsSpent(activity.Info{Attempt: 2, RetryPolicy: policy}))
	assert.True(t, attemptsSpent(activity.Info{Attempt: 3, RetryPolicy: policy}))
	assert.False(t, attemptsSpent(activity.Info{Attempt: 50, RetryPolicy: &temporal.RetryPolicy{}}), "unlimited")
	assert.False(t, attemptsSpent(activity.Info{Attempt: 50}), "no policy known")
}

// A request's instance and type become labels only when they are this
// agent's instance and a backup type: a hand-written request cannot add
// series.
func TestBackupFailureLabelsFromTheConfig(t *testing.T) {
	cat := testCatalog(t, 0)
	a := &Agent{Host: "h1", Config: cat.Config, Repo: cat.Repo}
	for _, p := range []BackupParams{
		{Instance: "no-such-instance", BackupID: "b1", Type: manifest.TypeFull},
		{Instance: "db1", BackupID: "b1", Type: "no-such-type"},
	} {
		_, err := runBackup(t, a, p)
		require.Error(t, err)
		var ae *temporal.ApplicationError
		require.ErrorAs(t, err, &ae)
		require.True(t, ae.NonRetryable(), "%v", err)
		assert.Zero(t, backupFailures(t, p.Instance, p.Type), "%+v", p)
	}
}

// A data path stopped by the workflow's cancel fails with whatever broke
// first (here the killed extractor's pipe): Temporal must still see a
// cancel, or the workflow ends failed instead of cancelled.
func TestCancelledAttemptReportsACancel(t *testing.T) {
	epipe := fmt.Errorf("download chunk 18: write output: %w", syscall.EPIPE)
	ctx, cancel := context.WithCancelCause(context.Background())
	assert.Same(t, epipe, asCancel(ctx, epipe), "not cancelled: the error as it is")
	cancel(temporal.NewCanceledError("cancelled by the operator"))
	err := asCancel(ctx, epipe)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, syscall.EPIPE, "the cause is kept")
	assert.NoError(t, asCancel(ctx, nil))

	// A timed-out attempt is not a cancel: it is retried.
	tctx, tcancel := context.WithTimeout(context.Background(), 0)
	defer tcancel()
	<-tctx.Done()
	assert.Same(t, epipe, asCancel(tctx, epipe))
}
