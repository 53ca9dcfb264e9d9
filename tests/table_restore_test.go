package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/tablecopy"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// liveWriter commits one row per transaction into e2e.live until stopped
// and records when each commit returned.
type liveWriter struct {
	mu      sync.Mutex
	commits []time.Time
	err     error
}

func (w *liveWriter) run(ctx context.Context, db *sql.DB) {
	for i := 1; ctx.Err() == nil; i++ {
		if _, err := db.ExecContext(context.Background(), "INSERT INTO e2e.live (id, at) VALUES (?, NOW(6))", i); err != nil {
			w.mu.Lock()
			w.err = fmt.Errorf("insert %d: %w", i, err)
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		w.commits = append(w.commits, time.Now())
		w.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

// between counts the commits in [from, to] and the longest time without a
// commit in it (the edges count as commits).
func (w *liveWriter) between(from, to time.Time) (n int, gap time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := from
	for _, c := range w.commits {
		if c.Before(from) || c.After(to) {
			continue
		}
		n++
		gap = max(gap, c.Sub(last))
		last = c
	}
	return n, max(gap, to.Sub(last))
}

// ordersWriter inserts and updates shop.orders while running is set.
type ordersWriter struct {
	mu     sync.Mutex
	paused bool
	err    error
}

func (w *ordersWriter) pause(p bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paused = p
}

func (w *ordersWriter) run(ctx context.Context, db *sql.DB) {
	for i := 0; ctx.Err() == nil; i++ {
		w.mu.Lock()
		if w.paused {
			w.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			continue
		}
		var err error
		if i%3 == 0 {
			_, err = db.Exec("UPDATE shop.orders SET amount = amount + 1, note = CONCAT('upd ', ?) WHERE id = ?", i, 1+i%500)
		} else {
			_, err = db.Exec("INSERT INTO shop.orders (customer, amount, note, doc) VALUES (?, ?, 'new ö 😀', REPEAT(UNHEX('ABCD'), 300))", i%37, i)
		}
		w.mu.Unlock()
		if err != nil {
			w.err = err
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// activityWindow is when the activity of that type of the workflow ran
// (its last attempt), from the workflow's history.
func (s *stack) activityWindow(workflowID, activityType string) (from, to time.Time) {
	s.t.Helper()
	it := s.client.GetWorkflowHistory(s.ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]bool{}
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(s.t, err)
		switch ev.EventType {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			if ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == activityType {
				scheduled[ev.EventId] = true
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if scheduled[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] {
				from = ev.EventTime.AsTime()
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if scheduled[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()] {
				to = ev.EventTime.AsTime()
			}
		}
	}
	require.False(s.t, from.IsZero() || to.IsZero(), "%s of %s ran", activityType, workflowID)
	return from, to
}

// gtidBeforeDrop reads the source's binlogs with the flavor's binlog tool
// and returns the GTID of the DROP TABLE of table (quoted, as the server
// logs it) and that of the transaction before it (one source, one domain).
func gtidBeforeDrop(t *testing.T, fl flavor.Name, datadir, table string) (drop, before string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(datadir, "binlog.[0-9]*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	tool, err := testdb.Binary("mariadb-binlog")
	gtidRE := regexp.MustCompile(`GTID (\d+)-(\d+)-(\d+)`)
	if fl == flavor.MySQL {
		tool, err = testdb.MySQLBinary("mysqlbinlog")
		gtidRE = regexp.MustCompile(`GTID_NEXT= '([0-9a-f-]+):(\d+)'`)
	}
	require.NoError(t, err)
	out, err := exec.Command(tool, files...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var cur []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := gtidRE.FindStringSubmatch(line); m != nil {
			cur = m
		}
		if strings.HasPrefix(line, "DROP TABLE "+table) && cur != nil {
			last := cur[len(cur)-1]
			n, err := strconv.Atoi(last)
			require.NoError(t, err)
			prefix := strings.Join(cur[1:len(cur)-1], "-")
			if fl == flavor.MySQL {
				prefix = cur[1] + ":"
			} else {
				prefix += "-"
			}
			return prefix + last, prefix + strconv.Itoa(n-1)
		}
	}
	t.Fatalf("no DROP TABLE %s in the binlogs %v", table, files)
	return "", ""
}

func (s *stack) tableRestoreResult(id string) workflows.TableRestoreResult {
	s.t.Helper()
	var res workflows.TableRestoreResult
	require.NoError(s.t, s.client.GetWorkflow(s.ctx, workflows.TableRestoreWorkflowID("db1", id), "").Get(s.ctx, &res))
	return res
}

func TestTableRestoreBringsBackADroppedTableUnderWrites(t *testing.T) {
	forFlavors(t, testTableRestoreBringsBackADroppedTableUnderWrites)
}

func testTableRestoreBringsBackADroppedTableUnderWrites(t *testing.T, fl flavor.Name) {
	scratch := filepath.Join(t.TempDir(), "scratch")
	require.NoError(t, os.MkdirAll(scratch, 0o700))
	s := newStack(t, withFlavor(fl), stackOptionFunc(func(c *stackSetup) { c.config += "\nagent:\n  scratch_dir: " + scratch + "\n" }))
	db := s.numbered()
	for _, q := range []string{
		"CREATE TABLE e2e.live (id INT PRIMARY KEY, at DATETIME(6)) ENGINE=InnoDB",
		"CREATE DATABASE shop",
		"CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT NOT NULL, amount DECIMAL(12,2), note VARCHAR(200) CHARACTER SET utf8mb4, " +
			"doc BLOB, KEY (customer)) ENGINE=InnoDB",
	} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	for i := 0; i < 20; i++ {
		_, err := db.Exec("INSERT INTO shop.orders (customer, amount, note, doc) SELECT seq % 37, seq, CONCAT('order ', seq), REPEAT(UNHEX('00FF'), seq % 200) " +
			"FROM (SELECT a.n * 10 + b.n AS seq FROM (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) a, " +
			"(SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) b) x")
		require.NoError(t, err)
	}
	arch := s.startArchive("db1", 30*time.Second)
	s.backup("b1", "full")

	// Writers: one on another table, one on shop.orders.
	wctx, stopWriters := context.WithCancel(s.ctx)
	defer stopWriters()
	nw := &writer{mysql: fl == flavor.MySQL}
	live := &liveWriter{}
	ow := &ordersWriter{}
	var wg sync.WaitGroup
	wdb, err := s.src.DB("")
	require.NoError(t, err)
	defer wdb.Close()
	for _, f := range []func(){func() { nw.run(wctx, wdb) }, func() { live.run(wctx, wdb) }} {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	owCtx, stopOrders := context.WithCancel(s.ctx)
	var owDone sync.WaitGroup
	owDone.Add(1)
	go func() { defer owDone.Done(); ow.run(owCtx, wdb) }()
	time.Sleep(2 * time.Second)

	// The point P: the orders writer paused, the table's checksum and the
	// server's GTID position (the other writers go on).
	ow.pause(true)
	sumP, err := tablecopy.Checksum(s.ctx, db, tablecopy.TableName{Schema: "shop", Table: "orders"})
	require.NoError(t, err)
	p := gtidPos(t, db)
	ow.pause(false)
	time.Sleep(1500 * time.Millisecond)
	stopOrders()
	owDone.Wait()
	require.NoError(t, ow.err)
	sumDrop, err := tablecopy.Checksum(s.ctx, db, tablecopy.TableName{Schema: "shop", Table: "orders"})
	require.NoError(t, err)
	require.NotEqual(t, sumP, sumDrop, "the orders table changed after P: the restore has to stop at P")
	_, err = db.Exec("DROP TABLE shop.orders")
	require.NoError(t, err)
	t.Logf("P = %s: shop.orders had %d rows, checksum %s; at the drop %d rows", p, sumP.Rows, sumP.Checksum, sumDrop.Rows)
	s.waitArchived("db1", gtidPos(t, db))

	// The restore, through the CLI, with the live writer committing.
	strataBinary(t)
	t0 := time.Now()
	out, err := s.cli("restore", "db1", "--table", "shop.orders", "--to-gtid", p, "--into", "db1", "--as", "shop.orders_restored", "--id", "r1", "--wait")
	t1 := time.Now()
	require.NoError(t, err, out)
	t.Log(out)
	res := s.tableRestoreResult("r1")
	assert.Equal(t, tablecopy.MethodTransport, res.Import.Method)
	assert.Equal(t, sumP, res.Import.SourceSum, "the scratch server has the table as of P")
	assert.Equal(t, sumP, res.Import.DestSum)
	got, err := tablecopy.Checksum(s.ctx, db, tablecopy.TableName{Schema: "shop", Table: "orders_restored"})
	require.NoError(t, err)
	assert.Equal(t, sumP, got, "the live server's shop.orders_restored is shop.orders as of P")
	assert.True(t, res.TornDown)
	requireTornDown(t, scratch, "table-r1")
	assert.Contains(t, out, "restored table shop.orders of db1 into db1 as shop.orders_restored")
	assert.Contains(t, out, "checksum  "+sumP.Checksum+" on the scratch server, "+sumP.Checksum+" on db1")

	// The live server kept serving: commits all through the restore and
	// during the import.
	from, to := s.activityWindow(workflows.TableRestoreWorkflowID("db1", "r1"), "ImportTable")
	nAll, gapAll := live.between(t0, t1)
	nImport, gapImport := live.between(from, to)
	t.Logf("live writer: %d commits during the restore (%.1fs), longest gap %v; %d commits during the import (%v), longest gap %v",
		nAll, t1.Sub(t0).Seconds(), gapAll.Round(time.Millisecond), nImport, to.Sub(from).Round(time.Millisecond), gapImport.Round(time.Millisecond))
	var ph []string
	for _, x := range res.Phases {
		ph = append(ph, fmt.Sprintf("%s=%.2fs", x.Phase, x.Seconds))
	}
	for _, x := range res.Import.Phases {
		ph = append(ph, fmt.Sprintf("import.%s=%.3fs", x.Phase, x.Seconds))
	}
	sort.Strings(ph)
	t.Logf("phases: %v", ph)
	assert.Positive(t, nAll)
	assert.Positive(t, nImport, "the live writer committed during the import")

	// Just before the DROP, found as the runbook finds it: the DROP's GTID
	// in the source's binlog (mariadb-binlog / mysqlbinlog), the
	// transaction before it the target. The table comes back as it was
	// when it was dropped.
	drop, before := gtidBeforeDrop(t, fl, s.src.Datadir, "`shop`.`orders`")
	t.Logf("the DROP is %s; restoring to %s", drop, before)
	out, err = s.cli("restore", "db1", "--table", "shop.orders", "--to-gtid", before, "--as", "shop.orders_before_drop", "--id", "r4", "--wait")
	require.NoError(t, err, out)
	t.Log(out)
	gotDrop, err := tablecopy.Checksum(s.ctx, db, tablecopy.TableName{Schema: "shop", Table: "orders_before_drop"})
	require.NoError(t, err)
	assert.Equal(t, sumDrop, gotDrop, "restored to the transaction before the DROP: the table as it was dropped")
	requireTornDown(t, scratch, "table-r4")

	// --replace: the existing table gets the table as of P, swapped in.
	out, err = s.cli("restore", "db1", "--table", "shop.orders", "--to-gtid", p, "--as", "shop.orders_before_drop", "--replace", "--id", "r5", "--wait")
	require.NoError(t, err, out)
	assert.Contains(t, out, "replaced  the table shop.orders_before_drop")
	gotReplaced, err := tablecopy.Checksum(s.ctx, db, tablecopy.TableName{Schema: "shop", Table: "orders_before_drop"})
	require.NoError(t, err)
	assert.Equal(t, sumP, gotReplaced)

	// The destination exists now: refused, nothing changed, nothing
	// restored (no scratch dir was made).
	out, err = s.cli("restore", "db1", "--table", "shop.orders", "--to-gtid", p, "--as", "shop.orders_restored", "--id", "r2", "--wait")
	require.Error(t, err, out)
	t.Log(out)
	assert.Contains(t, out, activities.ErrTableExists)
	assert.Contains(t, out, "--as")
	again, err := tablecopy.Checksum(s.ctx, db, tablecopy.TableName{Schema: "shop", Table: "orders_restored"})
	require.NoError(t, err)
	assert.Equal(t, got, again)
	requireTornDown(t, scratch, "table-r2")

	// A table the backup does not have at that point: TableNotFound,
	// naming it; torn down.
	out, err = s.cli("restore", "db1", "--table", "shop.nope", "--to-gtid", p, "--id", "r3", "--wait")
	require.Error(t, err, out)
	t.Log(out)
	assert.Contains(t, out, activities.ErrTableNotFound)
	assert.Contains(t, out, "shop.nope")
	requireTornDown(t, scratch, "table-r3")
	ok, err := tablecopy.Exists(s.ctx, db, tablecopy.TableName{Schema: "shop", Table: "nope"})
	require.NoError(t, err)
	assert.False(t, ok)

	stopWriters()
	wg.Wait()
	require.NoError(t, nw.err)
	require.NoError(t, live.err)
	// No work table is left on the live server.
	var left int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME LIKE 'strata\\_%'").Scan(&left))
	assert.Zero(t, left)
	_ = s.stopArchive(arch)
}
