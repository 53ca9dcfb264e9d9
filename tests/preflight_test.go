package tests

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/preflight"
	"github.com/strata-backup/strata/workflows"
)

// TestLongTransactionMakesPreflightWaitThenFail: a transaction left open on
// the source makes the backup's pre-flight check wait and check again
// (seen in its heartbeat), then fail with PreflightBlocked naming the
// transaction's id, user, thread, age and last statement when the budget
// runs out, before the backup took any lock or wrote anything; once the
// transaction commits, running the backup again succeeds.
func TestLongTransactionMakesPreflightWaitThenFail(t *testing.T) {
	s := newStack(t, stackOptionFunc(func(c *stackSetup) {
		c.defaults = "  preflight: {max_trx_age: 2s, budget: 10s, recheck: 1s}"
		// The last statement of an idle transaction, from performance_schema.
		c.srcArgs = []string{"--performance-schema=ON", "--performance-schema-consumer-events-statements-current=ON"}
	}))
	db := s.numbered()
	insertRows(t, db, 1, 50)

	held, err := db.Conn(s.ctx)
	require.NoError(t, err)
	defer held.Close()
	var thread uint64
	require.NoError(t, held.QueryRowContext(s.ctx, "SELECT CONNECTION_ID()").Scan(&thread))
	_, err = held.ExecContext(s.ctx, "BEGIN")
	require.NoError(t, err)
	const stmt = "UPDATE e2e.numbered SET payload = 'held' WHERE id = 7"
	_, err = held.ExecContext(s.ctx, stmt)
	require.NoError(t, err)
	var trxID string
	require.NoError(t, db.QueryRowContext(s.ctx, "SELECT trx_id FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = ?", thread).Scan(&trxID))
	// The transaction is older than max_trx_age before the backup starts.
	require.Eventually(t, func() bool {
		var age int
		return db.QueryRowContext(s.ctx, "SELECT TIMESTAMPDIFF(SECOND, trx_started, NOW()) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = ?", thread).Scan(&age) == nil && age > 2
	}, time.Minute, 100*time.Millisecond)

	const id = "pf1"
	opts := client.StartWorkflowOptions{ID: workflows.BackupWorkflowID("db1", id), TaskQueue: s.cfg.Temporal.TaskQueue,
		TypedSearchAttributes: workflows.SearchAttributes("db1", "backup", id, "h1")}
	run, err := s.client.ExecuteWorkflow(s.ctx, opts, workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: id, Type: "full"})
	require.NoError(t, err)

	// It waits: the check's heartbeat shows more than one check, blocked by
	// the transaction, while the workflow is still running.
	var prog preflight.Progress
	s.waitHeartbeat(run, "Preflight", &prog, func() bool {
		return prog.Checked >= 2 && len(prog.Blocks) == 1 && strings.Contains(prog.Blocks[0].Reason, "transaction "+trxID+" ")
	})
	require.Equal(t, "trx_age", prog.Blocks[0].Check)
	// Meanwhile the source takes writes: the check locks nothing.
	insertRows(t, db, 51, 60)

	err = run.Get(s.ctx, nil)
	requireAppError(t, err, activities.ErrPreflightBlocked, fmt.Sprintf("transaction %s of root@127.0.0.1:", trxID))
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	for _, want := range []string{fmt.Sprintf("(thread %d) open for ", thread), "(max_trx_age 2s)", "query: " + stmt, "budget 10s", "took no lock"} {
		require.Contains(t, ae.Error(), want)
	}
	t.Logf("backup failed as it should: %v", ae)
	// Nothing of the backup was written.
	_, err = s.repo.ReadManifest(s.ctx, "db1", id)
	require.Error(t, err, "no manifest of the blocked backup")

	// After the transaction commits, the backup run again (under a new id:
	// a backup id is used once) succeeds.
	_, err = held.ExecContext(s.ctx, "COMMIT")
	require.NoError(t, err)
	const retry = "pf2"
	opts.ID, opts.TypedSearchAttributes = workflows.BackupWorkflowID("db1", retry), workflows.SearchAttributes("db1", "backup", retry, "h1")
	var res workflows.BackupResult
	run, err = s.client.ExecuteWorkflow(s.ctx, opts, workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: retry, Type: "full"})
	require.NoError(t, err)
	require.NoError(t, run.Get(s.ctx, &res))
	require.Equal(t, retry, res.BackupID)
	require.NotNil(t, res.Preflight, "the check ran")
	require.False(t, res.Preflight.Skipped)
	require.Zero(t, res.Preflight.OpenTrxs)
	_, err = s.repo.ReadManifest(s.ctx, "db1", retry)
	require.NoError(t, err)
}
