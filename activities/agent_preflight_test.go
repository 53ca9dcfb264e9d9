package activities

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/testdb"
)

func runPreflight(t *testing.T, a *Agent) (*PreflightResult, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	v, err := env.ExecuteActivity(a.Preflight, PreflightParams{Instance: "db1"})
	if err != nil {
		return nil, err
	}
	var res PreflightResult
	require.NoError(t, v.Get(&res))
	return &res, nil
}

// The agent's pre-flight check against a real server: an open transaction
// older than max_trx_age blocks it until the budget runs out
// (PreflightBlocked, not retryable, naming the transaction); once it
// commits the check passes; enabled: false skips it without connecting.
func TestPreflightActivity(t *testing.T) {
	srv := testdb.ForTest(t, testdb.Options{})
	t.Setenv("PF_PASSWORD", srv.Password)
	cfgFor := func(pf string) *config.Config {
		c, err := config.Parse([]byte(fmt.Sprintf(`
storage: {local: {root: %s}}
agent: {scratch_dir: %s}
instances:
  - id: db1
    host: h1
    connect: {address: "127.0.0.1:%d", user: root, password_env: PF_PASSWORD}
    datadir: %s
    backup: {preflight: %s}
`, t.TempDir(), t.TempDir(), srv.Port, srv.Datadir, pf)))
		require.NoError(t, err)
		return c
	}
	a := &Agent{Host: "h1", Config: cfgFor("{max_trx_age: 1s, budget: 2s, recheck: 1s}"), HeartbeatEvery: time.Second}

	res, err := runPreflight(t, a)
	require.NoError(t, err)
	require.Equal(t, 1, res.Checked)
	require.False(t, res.Skipped)
	require.Positive(t, res.Sample.FreeDisk)

	db, err := srv.DB("")
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	_, err = db.Exec("CREATE DATABASE pf")
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE pf.t (id INT PRIMARY KEY) ENGINE=InnoDB")
	require.NoError(t, err)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "INSERT INTO pf.t VALUES (1)")
	require.NoError(t, err)
	var trxID string
	require.Eventually(t, func() bool {
		var age int
		return db.QueryRow("SELECT trx_id, TIMESTAMPDIFF(SECOND, trx_started, NOW()) FROM information_schema.innodb_trx").Scan(&trxID, &age) == nil && age >= 2
	}, time.Minute, 100*time.Millisecond)

	_, err = runPreflight(t, a)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, ErrPreflightBlocked, ae.Type())
	require.True(t, ae.NonRetryable())
	require.Contains(t, ae.Error(), "transaction "+trxID+" of root@127.0.0.1:")
	require.Contains(t, ae.Error(), "(max_trx_age 1s)")
	require.Contains(t, ae.Error(), "(budget 2s, ")

	_, err = conn.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond) // innodb_trx is a cache refreshed after 100ms
	res, err = runPreflight(t, a)
	require.NoError(t, err)
	require.Zero(t, res.OpenTrxs)

	off := &Agent{Host: "h1", Config: cfgFor("{enabled: false}")}
	off.Config.Instances[0].Connect.Address = "127.0.0.1:1" // never reached
	res, err = runPreflight(t, off)
	require.NoError(t, err)
	require.True(t, res.Skipped)
}
