package preflight

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/testdb"
)

var th = Thresholds{MaxTrxAge: 5 * time.Minute, MaxThreadsRunning: 64, MaxReplicationLag: 5 * time.Minute, MinFreeDisk: 1 << 30}

func dur(d time.Duration) *time.Duration { return &d }

func TestDecide(t *testing.T) {
	ok := Sample{ThreadsRunning: 3, FreeDisk: 10 << 30, DiskPath: "/scratch",
		Trxs: []Trx{{ID: "421", User: "app", Host: "10.0.0.5:4000", Age: 4 * time.Minute, Query: "UPDATE t SET a=1"}}}
	require.Empty(t, Decide(ok, th), "everything within its threshold")

	old := ok
	old.Trxs = []Trx{
		{ID: "77", Thread: 12, User: "etl", Host: "10.0.0.9:5123", Age: 2 * time.Hour, Query: "SELECT *\n  FROM big"},
		{ID: "78", User: "app", Host: "h", Age: 10 * time.Minute, Query: "x"},
	}
	b := Decide(old, th)
	require.Len(t, b, 1, "one block for transactions, the oldest")
	require.Equal(t, "trx_age", b[0].Check)
	for _, want := range []string{"transaction 77", "etl@10.0.0.9:5123 (thread 12)", "2h0m0s", "SELECT * FROM big", "max_trx_age 5m0s"} {
		require.Contains(t, b[0].Reason, want)
	}
	idle := ok
	idle.Trxs = []Trx{{ID: "9", User: "u", Host: "h", Age: time.Hour}}
	require.Contains(t, Summary(Decide(idle, th)), "query: (idle in its transaction")

	atLimit := ok
	atLimit.Trxs = []Trx{{ID: "1", Age: 5 * time.Minute}}
	atLimit.ThreadsRunning = 64
	atLimit.FreeDisk = 1 << 30
	require.Empty(t, Decide(atLimit, th), "a figure equal to its threshold passes")

	busy := ok
	busy.ThreadsRunning = 65
	require.Equal(t, []Block{{Check: "threads_running", Reason: "65 threads running (max_threads_running 64)"}}, Decide(busy, th))

	full := ok
	full.FreeDisk = 512 << 20
	b = Decide(full, th)
	require.Len(t, b, 1)
	require.Equal(t, "free_disk", b[0].Check)
	require.Equal(t, "512.0MiB free in /scratch (min_free_disk 1.0GiB)", b[0].Reason)

	notReplica := ok
	require.Empty(t, Decide(notReplica, th), "not a replica: no lag")
	lagging := ok
	lagging.Replica, lagging.Lag = true, dur(6*time.Minute)
	b = Decide(lagging, th)
	require.Len(t, b, 1)
	require.Equal(t, "replication lag 6m0s (max_replication_lag 5m0s)", b[0].Reason)
	lagging.Lag = dur(time.Minute)
	require.Empty(t, Decide(lagging, th))
	stopped := ok
	stopped.Replica = true
	b = Decide(stopped, th)
	require.Len(t, b, 1)
	require.Contains(t, b[0].Reason, "SQL thread is not running")

	all := Sample{Replica: true, Lag: dur(time.Hour), ThreadsRunning: 100, FreeDisk: 1,
		Trxs: []Trx{{ID: "5", Age: time.Hour}}}
	require.Len(t, Decide(all, th), 4)
	require.Empty(t, Decide(all, Thresholds{}), "zero thresholds check nothing")
}

// fakeClock advances only when the waiter sleeps.
type fakeClock struct {
	t      time.Time
	slept  []time.Duration
	sample func(n int) Sample
	n      int
}

func (c *fakeClock) now() time.Time { return c.t }
func (c *fakeClock) sleep(_ context.Context, d time.Duration) error {
	c.slept = append(c.slept, d)
	c.t = c.t.Add(d)
	return nil
}
func (c *fakeClock) measure(context.Context) (Sample, error) {
	c.n++
	return c.sample(c.n), nil
}

func TestWaitPassesWhenTheBlockClears(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0), sample: func(n int) Sample {
		s := Sample{FreeDisk: 2 << 30}
		if n < 3 {
			s.Trxs = []Trx{{ID: "7", Age: time.Hour}}
		}
		return s
	}}
	var reports []Progress
	p, err := Wait(context.Background(), th, time.Minute, 15*time.Second, Progress{}, c.measure,
		func(p Progress) { reports = append(reports, p) }, c.now, c.sleep)
	require.NoError(t, err)
	require.Equal(t, 3, p.Checked)
	require.Empty(t, p.Blocks)
	require.Equal(t, []time.Duration{15 * time.Second, 15 * time.Second}, c.slept)
	require.Len(t, reports, 3)
	require.NotEmpty(t, reports[0].Blocks, "progress shows what blocks")
	require.Equal(t, time.Unix(1000, 0), p.Started)
}

func TestWaitFailsWhenTheBudgetRunsOut(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0), sample: func(int) Sample {
		return Sample{FreeDisk: 2 << 30, Trxs: []Trx{{ID: "7", User: "etl", Host: "h", Age: time.Hour, Query: "SELECT 1"}}}
	}}
	_, err := Wait(context.Background(), th, 40*time.Second, 15*time.Second, Progress{}, c.measure,
		func(Progress) {}, c.now, c.sleep)
	var be *BlockedError
	require.ErrorAs(t, err, &be)
	require.True(t, errors.Is(err, ErrBlocked))
	// Checks at 0, 15, 30 and at the end of the budget, 40.
	require.Equal(t, []time.Duration{15 * time.Second, 15 * time.Second, 10 * time.Second}, c.slept)
	require.Equal(t, 4, be.Checked)
	require.Equal(t, 40*time.Second, be.Waited)
	require.Contains(t, err.Error(), "transaction 7 of etl@h (thread 0) open for 1h0m0s")
	require.Contains(t, err.Error(), "budget 40s")
}

func TestWaitResumesTheBudgetOfAnEarlierAttempt(t *testing.T) {
	start := time.Unix(1000, 0)
	c := &fakeClock{t: start.Add(50 * time.Second), sample: func(int) Sample {
		return Sample{FreeDisk: 1}
	}}
	_, err := Wait(context.Background(), th, time.Minute, 15*time.Second, Progress{Started: start, Checked: 4}, c.measure,
		func(Progress) {}, c.now, c.sleep)
	var be *BlockedError
	require.ErrorAs(t, err, &be)
	require.Equal(t, []time.Duration{10 * time.Second}, c.slept, "only the rest of the budget is waited")
	require.Equal(t, 6, be.Checked)
}

func TestWaitReturnsMeasurementErrors(t *testing.T) {
	boom := errors.New("connection lost")
	_, err := Wait(context.Background(), th, time.Minute, time.Second, Progress{},
		func(context.Context) (Sample, error) { return Sample{}, boom },
		func(Progress) {}, time.Now, Sleep)
	require.ErrorIs(t, err, boom)
}

// TestMeasureRealServer opens a transaction on a real MariaDB and checks
// that Measure names it, with its user and last statement (where
// performance_schema is on), and that a server that is no replica has no
// lag.
func TestMeasureRealServer(t *testing.T) {
	t.Run("performance_schema off", func(t *testing.T) { measureRealServer(t, false) })
	t.Run("performance_schema on", func(t *testing.T) { measureRealServer(t, true) })
}

func measureRealServer(t *testing.T, ps bool) {
	opts := testdb.Options{}
	if ps {
		opts.ExtraArgs = []string{"--performance-schema=ON", "--performance-schema-consumer-events-statements-current=ON"}
	}
	srv := testdb.ForTest(t, opts)
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
	s, err := Measure(ctx, db, flavor.Flavor{Name: flavor.MariaDB}, t.TempDir())
	require.NoError(t, err)
	require.Len(t, s.Trxs, 1, "%+v", s.Trxs)
	require.Equal(t, "root", s.Trxs[0].User)
	require.NotEmpty(t, s.Trxs[0].ID)
	var thread uint64
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&thread))
	require.Equal(t, thread, s.Trxs[0].Thread)
	// Idle in its transaction: the last statement where performance_schema
	// keeps it (off by default in MariaDB).
	// Without it, only a statement still shown as running (trx_query, or
	// the processlist's INFO, which the server clears just after the
	// client has its answer) can name it: empty, or that statement.
	if ps {
		require.Equal(t, "INSERT INTO pf.t VALUES (1)", s.Trxs[0].Query)
	} else if q := s.Trxs[0].Query; q != "" {
		require.Equal(t, "INSERT INTO pf.t VALUES (1)", q)
	}
	require.False(t, s.Replica)
	require.Nil(t, s.Lag)
	require.Positive(t, s.FreeDisk)
	require.GreaterOrEqual(t, s.ThreadsRunning, 0)

	b := Decide(s, Thresholds{MaxTrxAge: time.Nanosecond})
	require.Len(t, b, 1)
	require.Contains(t, b[0].Reason, "transaction "+s.Trxs[0].ID+" of root@")

	_, err = conn.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	// InnoDB serves information_schema.innodb_trx from a cache it refreshes
	// when it is older than 100ms.
	time.Sleep(200 * time.Millisecond)
	s, err = Measure(ctx, db, flavor.Flavor{Name: flavor.MariaDB}, t.TempDir())
	require.NoError(t, err)
	require.Empty(t, s.Trxs, "committed")
}

// On MySQL 9.7 the replica status statement is SHOW REPLICA STATUS
// (flavor.Words); a server that is no replica has no lag.
func TestReplicationLagMySQL(t *testing.T) {
	testdb.RequireMySQL(t)
	srv := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL})
	db, err := srv.DB("")
	require.NoError(t, err)
	defer db.Close()
	var version string
	require.NoError(t, db.QueryRow("SELECT VERSION()").Scan(&version))
	replica, lag, err := ReplicationLag(context.Background(), db, flavor.Flavor{Name: flavor.MySQL, Version: version})
	require.NoError(t, err)
	require.False(t, replica)
	require.Nil(t, lag)
	// MariaDB's words are refused by this server: the statement really
	// follows the flavor.
	_, _, err = ReplicationLag(context.Background(), db, flavor.Flavor{Name: flavor.MariaDB})
	require.Error(t, err)
}
