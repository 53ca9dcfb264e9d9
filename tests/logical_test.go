package tests

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// everything creates, on db, schemas with every kind of object and column
// a logical backup must carry: tables with and without a primary key,
// generated and invisible columns, a system-versioned table (MariaDB),
// MyISAM, blobs of every byte value, utf8mb4 beyond the BMP, identifiers
// with backticks, spaces, dots and non-ASCII letters; views over views,
// a procedure, a function, a trigger, an event, a sequence (MariaDB), an
// account with grants.
func everything(t *testing.T, db *sql.DB, fl flavor.Name) {
	t.Helper()
	var all []byte
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	stmts := []string{
		"CREATE DATABASE shop CHARACTER SET utf8mb4",
		"CREATE TABLE shop.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(64) NOT NULL, total DECIMAL(12,2), note TEXT, " +
			"placed DATETIME(6), flag BIT(3), kind ENUM('a','b','c'), tags SET('x','y'), doc JSON, price DOUBLE, " +
			"total_x2 DECIMAL(13,2) AS (total*2) VIRTUAL, cust_upper VARCHAR(64) AS (UPPER(customer)) STORED, " +
			"KEY by_customer (customer), KEY by_placed (placed)) ENGINE=InnoDB",
		"CREATE TABLE shop.`odd ``name``.v2` (`ké y` VARCHAR(20) NOT NULL, `sélect` INT NOT NULL, `blob` LONGBLOB, txt VARCHAR(100), PRIMARY KEY (`ké y`, `sélect`)) ENGINE=InnoDB",
		"CREATE TABLE shop.nopk (a INT, b VARCHAR(10), c BLOB) ENGINE=InnoDB",
		"CREATE TABLE shop.legacy (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=MyISAM",
		"CREATE TABLE shop.audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT, at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3))",
		"CREATE VIEW shop.big_orders AS SELECT id, customer, total FROM shop.orders WHERE total > 100",
		"CREATE VIEW shop.big_customers AS SELECT customer, COUNT(*) AS n FROM shop.big_orders GROUP BY customer",
		"CREATE PROCEDURE shop.add_order(IN c VARCHAR(64), IN t DECIMAL(12,2)) BEGIN INSERT INTO shop.orders (customer, total) VALUES (c, t); END",
		"CREATE FUNCTION shop.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
		"CREATE TRIGGER shop.orders_audit AFTER INSERT ON shop.orders FOR EACH ROW INSERT INTO shop.audit (order_id) VALUES (NEW.id)",
		"CREATE EVENT shop.nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM shop.audit WHERE at < NOW() - INTERVAL 30 DAY",
		"CREATE DATABASE `odd db.ü`",
		"CREATE TABLE `odd db.ü`.`t` (id INT PRIMARY KEY, s VARCHAR(10) CHARACTER SET latin1, u VARCHAR(10) CHARACTER SET utf8mb4)",
		"CREATE USER 'app'@'%' IDENTIFIED BY 'app-Secret-1'",
		"GRANT SELECT, INSERT ON shop.* TO 'app'@'%'",
		"GRANT EXECUTE ON PROCEDURE shop.add_order TO 'app'@'%'",
	}
	if fl == flavor.MariaDB {
		stmts = append(stmts,
			"CREATE TABLE shop.prices (id INT PRIMARY KEY, price DECIMAL(10,2)) WITH SYSTEM VERSIONING",
			"CREATE SEQUENCE shop.invoice_no START WITH 1000 INCREMENT BY 5",
			"CREATE TABLE shop.hidden (id INT PRIMARY KEY, secret INT INVISIBLE)",
		)
	} else {
		stmts = append(stmts, "CREATE TABLE shop.hidden (id INT PRIMARY KEY, secret INT INVISIBLE)")
	}
	for _, q := range stmts {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	for i := 0; i < 3000; i++ {
		_, err := db.Exec("INSERT INTO shop.orders (customer, total, note, placed, flag, kind, tags, doc, price) VALUES (?, ?, ?, ?, b'101', 'b', 'x,y', ?, ?)",
			fmt.Sprintf("cust-%d", i%97), float64(i)*1.25, strings.Repeat("ü😀\n'\"\\", i%7), time.Date(2026, 1, 1, 0, 0, 0, i*1000, time.UTC),
			fmt.Sprintf(`{"n": %d, "s": "a\"b"}`, i), float64(i)/3)
		require.NoError(t, err)
	}
	for i := 0; i < 300; i++ {
		_, err := db.Exec("INSERT INTO shop.`odd ``name``.v2` VALUES (?, ?, ?, ?)", fmt.Sprintf("k€%d", i%10), i, append([]byte{byte(i)}, all...), "😀𝄞")
		require.NoError(t, err)
		_, err = db.Exec("INSERT INTO shop.nopk VALUES (?, ?, ?)", i%5, "dup", all[:i%256]) // duplicate rows too
		require.NoError(t, err)
	}
	for _, q := range []string{
		"INSERT INTO shop.nopk VALUES (NULL, NULL, NULL), (0, '', '')",
		"INSERT INTO shop.legacy VALUES (1, 'one'), (2, 'two')",
		"INSERT INTO `odd db.ü`.t VALUES (1, _latin1 0x636166E9, 'café')",
		"INSERT INTO shop.hidden (id, secret) VALUES (1, 42), (2, 43)",
		"INSERT INTO shop.audit (id, order_id) VALUES (0, 0)", // an AUTO_INCREMENT column holding 0
	} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	if fl == flavor.MariaDB {
		for _, q := range []string{"INSERT INTO shop.prices VALUES (1, 9.99), (2, 5.00)", "UPDATE shop.prices SET price = 10.99 WHERE id = 1",
			"DELETE FROM shop.prices WHERE id = 2", "SELECT NEXTVAL(shop.invoice_no)"} {
			_, err := db.Exec(q)
			require.NoError(t, err, q)
		}
	}
}

// definitions reads what must round-trip: CHECKSUM TABLE of every table
// (for system-versioned tables also of their history), and the definition
// of every object of the user schemas and the grants of the test account.
func definitions(t *testing.T, db *sql.DB, fl flavor.Name) map[string]string {
	t.Helper()
	out := map[string]string{}
	q := func(query string, args ...any) [][]sql.NullString {
		rows, err := db.Query(query, args...)
		require.NoError(t, err, query)
		defer rows.Close()
		cols, err := rows.Columns()
		require.NoError(t, err)
		var all [][]sql.NullString
		for rows.Next() {
			v := make([]sql.NullString, len(cols))
			p := make([]any, len(cols))
			for i := range v {
				p[i] = &v[i]
			}
			require.NoError(t, rows.Scan(p...))
			all = append(all, v)
		}
		require.NoError(t, rows.Err())
		return all
	}
	qi := func(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
	for _, r := range q("SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ('shop', 'odd db.ü', 'e2e', 'demo') ORDER BY 1, 2") {
		name := qi(r[0].String) + "." + qi(r[1].String)
		switch r[2].String {
		case "VIEW":
			out["view "+name] = q("SHOW CREATE VIEW " + name)[0][1].String
			continue
		case "SEQUENCE":
			out["sequence "+name] = q("SHOW CREATE SEQUENCE " + name)[0][1].String
			out["sequence state "+name] = q("SELECT next_not_cached_value FROM " + name)[0][0].String
			continue
		}
		def := q("SHOW CREATE TABLE " + name)[0][1].String
		out["table "+name] = sameSpelling(stripAutoIncrement(def))
		out["checksum "+name] = q("CHECKSUM TABLE " + name)[0][1].String
		if strings.Contains(def, "WITH SYSTEM VERSIONING") {
			out["history "+name] = q("SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, price, row_start, row_end))) FROM " + name + " FOR SYSTEM_TIME ALL")[0][1].String
		}
	}
	for _, r := range q("SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop'") {
		out["routine "+r[1].String] = q("SHOW CREATE " + r[2].String + " " + qi(r[0].String) + "." + qi(r[1].String))[0][2].String
	}
	for _, r := range q("SELECT TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'") {
		out["trigger "+r[1].String] = q("SHOW CREATE TRIGGER " + qi(r[0].String) + "." + qi(r[1].String))[0][2].String
	}
	for _, r := range q("SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop'") {
		out["event "+r[1].String] = q("SHOW CREATE EVENT " + qi(r[0].String) + "." + qi(r[1].String))[0][3].String
	}
	var grants []string
	for _, r := range q("SHOW GRANTS FOR 'app'@'%'") {
		grants = append(grants, r[0].String)
	}
	sort.Strings(grants)
	out["grants app"] = strings.Join(grants, "\n")
	return out
}

// sameSpelling spells a column's collation one way: MySQL prints
// "CHARACTER SET utf8mb4 COLLATE x" or only "COLLATE x" for the same column
// depending on the server's default collation of utf8mb4 (a server option,
// not part of the data: the source runs with utf8mb4_general_ci, the
// restored server with the compiled-in default).
func sameSpelling(def string) string {
	return strings.ReplaceAll(def, " CHARACTER SET utf8mb4 COLLATE ", " COLLATE ")
}

// stripAutoIncrement drops the AUTO_INCREMENT=N table option, which a
// server need not keep across a dump (MySQL and MariaDB both recompute it).
func stripAutoIncrement(def string) string {
	i := strings.Index(def, " AUTO_INCREMENT=")
	if i < 0 {
		return def
	}
	j := i + len(" AUTO_INCREMENT=")
	for j < len(def) && def[j] >= '0' && def[j] <= '9' {
		j++
	}
	return def[:i] + def[j:]
}

// restoreLogical restores logical backup id into a new datadir, with opts
// applied to the request, starts a server and opens it.
func (s *stack) restoreLogicalNew(id string, opts func(*workflows.RestoreRequest)) (*sql.DB, workflows.RestoreResult) {
	s.t.Helper()
	target := filepath.Join(s.t.TempDir(), "logical-"+id)
	port, err := testdb.FreePort()
	require.NoError(s.t, err)
	req := workflows.RestoreRequest{Instance: "db1", BackupID: id, TargetDir: target, Start: true, Port: port}
	if opts != nil {
		opts(&req)
	}
	var res workflows.RestoreResult
	_, err = s.run("restore/h1:"+target, workflows.RestoreWorkflowName, req, &res)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { stopPID(res.Server.PID) })
	db, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
	require.NoError(s.t, err)
	s.t.Cleanup(func() { db.Close() })
	return db, res
}

func TestLogicalBackupRoundTripsEveryObject(t *testing.T) {
	forFlavors(t, testLogicalBackupRoundTripsEveryObject)
}

func testLogicalBackupRoundTripsEveryObject(t *testing.T, fl flavor.Name) {
	s := newStack(t, withFlavor(fl), stackOptionFunc(func(c *stackSetup) { c.defaults = "  logical:\n    file_size: 1MiB\n" }))
	db, err := s.src.DB("")
	require.NoError(t, err)
	defer db.Close()
	everything(t, db, fl)
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 8<<20, nil))
	want := definitions(t, db, fl)

	res := s.backup("l1", manifest.TypeLogical)
	assert.Equal(t, manifest.TypeLogical, res.Type)
	m, err := s.repo.ReadManifest(s.ctx, "db1", "l1")
	require.NoError(t, err)
	require.NotNil(t, m.Logical)
	assert.Equal(t, manifest.ToolLogical, m.Tool)
	assert.NotEmpty(t, m.GTIDSet)
	assert.NotEmpty(t, m.BinlogFile)
	kinds := map[string]int{}
	for _, f := range m.Logical.Files {
		kinds[string(f.Kind)]++
	}
	t.Logf("logical backup: %d files %v, %d raw bytes, %d stored, lock %.3fs, gtid %s", len(m.Logical.Files), kinds, m.RawSize, m.StoredSize, m.LockDuration.Std().Seconds(), m.GTIDSet)
	for _, k := range []string{"users", "database", "table", "data", "view", "routine", "trigger", "event"} {
		assert.Greater(t, kinds[k], 0, "the dump has %s files", k)
	}
	if fl == flavor.MariaDB {
		assert.Greater(t, kinds["sequence"], 0)
	}

	// Verify reads it like any backup.
	var vres workflows.VerifyResult
	_, err = s.run("verify/db1/l1", workflows.VerifyWorkflowName, workflows.VerifyRequest{Instance: "db1", BackupID: "l1"}, &vres)
	require.True(t, vres.OK, "verify: %+v", vres.Report.Problems)
	require.NoError(t, err)

	rdb, rres := s.restoreLogicalNew("l1", nil)
	got := definitions(t, rdb, fl)
	for k, v := range want {
		assert.Equal(t, v, got[k], "%s", k)
	}
	for k := range got {
		_, ok := want[k]
		assert.True(t, ok, "restored %s, which the source does not have", k)
	}
	t.Logf("restored into a new datadir: %d rows, %d files, load %.2fs, whole restore %.2fs", rres.Stats.Rows, rres.Stats.Files, rres.Stats.FetchSeconds, rres.Seconds)
	// The account works with its password on the restored server.
	app, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", rres.Server.Port), User: "app", Password: "app-Secret-1"})
	require.NoError(t, err)
	defer app.Close()
	var n int
	require.NoError(t, app.QueryRow("SELECT COUNT(*) FROM shop.orders").Scan(&n))
	assert.Equal(t, 3000, n)
	// The trigger works on the restored server and did not fire during the load.
	var audits int
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*) FROM shop.audit").Scan(&audits))
	assert.Equal(t, 3001, audits, "the load did not fire the trigger (the source's trigger wrote one row per order, plus the row 0)")
	_, err = rdb.Exec("CALL shop.add_order('new', 1.00)")
	require.NoError(t, err)
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*) FROM shop.audit").Scan(&audits))
	assert.Equal(t, 3002, audits, "the restored trigger fires on the restored server")
}

// A logical backup taken under a write load restores exactly the
// transactions of its recorded GTID set (a prefix of the writer's commits),
// and a point-in-time restore from it lands on the exact transaction.
func TestLogicalBackupUnderWritesIsAnExactPrefixAndOpensAPITRWindow(t *testing.T) {
	forFlavors(t, testLogicalBackupUnderWrites)
}

func testLogicalBackupUnderWrites(t *testing.T, fl flavor.Name) {
	s := newStack(t, withFlavor(fl))
	db := s.numbered()
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 16<<20, nil))
	arch := s.startArchive("db1", 30*time.Second)
	wctx, stop := context.WithCancel(s.ctx)
	w := &writer{mysql: fl == flavor.MySQL}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(wctx, db) }()
	require.Eventually(t, func() bool { return w.count() > 50 }, time.Minute, 10*time.Millisecond)
	res := s.backup("lw", manifest.TypeLogical)
	during := w.count()
	require.Eventually(t, func() bool { return w.count() > during+100 }, time.Minute, 10*time.Millisecond)
	stop()
	wg.Wait()
	require.NoError(t, w.err)
	s.waitArchived("db1", gtidPos(t, db))

	rdb, _ := s.restoreLogicalNew("lw", nil)
	n, hi := countRows(t, rdb)
	require.Equal(t, n, hi, "the restored rows are a prefix 1..n")
	require.Greater(t, n, 50)
	set, err := gtid.Parse(fl, res.GTIDSet)
	require.NoError(t, err)
	w.mu.Lock()
	gtids := append([]string(nil), w.gtids...)
	w.mu.Unlock()
	in, err := set.ContainsGTID(gtids[n-1])
	require.NoError(t, err)
	assert.True(t, in, "the backup's GTID set %s holds row %d's transaction %s", res.GTIDSet, n, gtids[n-1])
	in, err = set.ContainsGTID(gtids[n])
	require.NoError(t, err)
	assert.False(t, in, "the backup's GTID set %s does not hold row %d's transaction %s", res.GTIDSet, n+1, gtids[n])
	t.Logf("logical backup under writes: %d rows of %d, gtid %s, commits blocked %.3fs", n, len(gtids), res.GTIDSet, res.CommitsBlockedSeconds)

	// Point in time from the logical backup: to the transaction of row n+37.
	k := n + 37
	pdb, pres, err := s.pitr(binlog.Target{GTID: gtids[k-1]}, "lw")
	require.NoError(t, err)
	pn, phi := countRows(t, pdb)
	assert.Equal(t, k, pn, "rows after the replay")
	assert.Equal(t, k, phi)
	require.NotNil(t, pres.Replay)
	t.Logf("PITR from the logical backup: replayed %d transactions to %s", pres.Replay.Transactions, gtids[k-1])
	s.stopArchive(arch)
}

// The agent is killed with SIGKILL in the middle of loading a logical backup
// into a running server; the retried load skips the files committed before
// the kill and finishes with every row exactly once.
func TestKilledAgentMidLogicalLoadFinishesWithoutDuplicates(t *testing.T) {
	into := testdb.ForTest(t, testdb.Options{})
	t.Setenv("STRATA_E2E_PASSWORD2", into.Password)
	s := newStack(t, stackOptionFunc(func(c *stackSetup) {
		c.defaults = "  logical:\n    file_size: 1MiB\n"
		c.config = fmt.Sprintf("  - id: db2\n    host: h1\n    connect:\n      address: 127.0.0.1:%d\n      user: root\n      password_env: STRATA_E2E_PASSWORD2\n    datadir: %s\n", into.Port, into.Datadir)
	}))
	db, want := s.seeded(48 << 20)
	s.backup("lk", manifest.TypeLogical)
	m, err := s.repo.ReadManifest(s.ctx, "db1", "lk")
	require.NoError(t, err)
	data := 0
	for _, f := range m.Logical.Files {
		if f.Kind == "data" {
			data++
		}
	}
	require.Greater(t, data, 20, "enough data files to kill the load between them")
	_ = db

	s.agent.Stop()
	s.agent = nil
	agent := s.startAgentProcess()
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: workflows.LoadWorkflowID("db2", "lk"), TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "lk", Into: "db2"})
	require.NoError(t, err)
	idb, err := into.DB("")
	require.NoError(t, err)
	defer idb.Close()
	var done int
	require.Eventually(t, func() bool {
		_ = idb.QueryRow("SELECT COUNT(*) FROM strata_load.progress WHERE step = 'data'").Scan(&done)
		return done >= 5
	}, 2*time.Minute, 20*time.Millisecond, "the load commits files")
	killAgent(t, agent)
	require.NoError(t, idb.QueryRow("SELECT COUNT(*) FROM strata_load.progress WHERE step = 'data'").Scan(&done))
	t.Logf("agent killed after %d of %d data files were committed", done, data)
	require.Less(t, done, data, "the kill landed in the middle of the load")

	s.noticeDeadAgent(run, "LoadLogical")
	s.startAgentProcess()
	var res workflows.RestoreResult
	require.NoError(t, run.Get(s.ctx, &res))
	require.NotNil(t, res.Load)
	assert.Greater(t, res.Load.SkippedFiles, 0, "the retry skipped the files committed before the kill")
	t.Logf("retried load: %d files loaded, %d skipped, %d rows", res.Load.Files, res.Load.SkippedFiles, res.Load.Rows)
	got, err := demo.Checksums(s.ctx, idb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(want, got), "every table as in the source: no row twice, none missing")
	var left int
	require.NoError(t, idb.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'strata_load'").Scan(&left))
	assert.Equal(t, 0, left, "the progress record is gone after the load")

	// Loading it again over the loaded tables is refused, naming them, and
	// changes nothing; with replace it loads again.
	var again workflows.RestoreResult
	_, err = s.run("load/db2/lk-again", workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "lk", Into: "db2"}, &again)
	requireAppError(t, err, "TableExists", "demo")
	got, err = demo.Checksums(s.ctx, idb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(want, got))
	_, err = s.run("load/db2/lk-replace", workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "lk", Into: "db2", Replace: true,
		Include: []string{"demo.orders"}, Rename: []string{"demo.orders=demo.orders_copy"}}, &again)
	require.NoError(t, err)
	var n1, n2 int
	require.NoError(t, idb.QueryRow("SELECT COUNT(*) FROM demo.orders").Scan(&n1))
	require.NoError(t, idb.QueryRow("SELECT COUNT(*) FROM demo.orders_copy").Scan(&n2))
	assert.Equal(t, n1, n2, "one table loaded under a new name")
	assert.Equal(t, 1, again.Load.Tables)
}
