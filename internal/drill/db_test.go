package drill_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/testdb"
)

func openDB(t *testing.T, s *testdb.Server) *sql.DB {
	t.Helper()
	db, err := s.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func exec1(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
}

// fixture creates tables that are hard to checksum right: NULLs, blobs
// with every byte value, utf8mb4, generated columns, no primary key with
// duplicate rows, identifiers with a backtick and a space, an empty table
// and a MyISAM table.
func fixture(t *testing.T, db *sql.DB) {
	exec1(t, db,
		"CREATE DATABASE `we``ird db` CHARACTER SET utf8mb4",
		"CREATE TABLE `we``ird db`.`t``1` (id INT PRIMARY KEY, n INT NULL, s VARCHAR(20) NULL, b LONGBLOB, "+
			"u VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, d DOUBLE, dt DATETIME(6), "+
			"g INT AS (id * 2) STORED, gv VARCHAR(60) AS (CONCAT(u, '!')) VIRTUAL) ENGINE=InnoDB",
		"INSERT INTO `we``ird db`.`t``1` (id, n, s, b, u, d, dt) VALUES "+
			"(1, NULL, NULL, NULL, 'plain', 1.5, '2024-01-02 03:04:05.123456'), "+
			"(2, 0, '', REPEAT(UNHEX('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9FA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDFE0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF'), 300), 'Grüße 名前 😀', -2e-300, NULL), "+
			"(3, 7, 'N', '', '', 0, '1970-01-01 00:00:01')",
		"CREATE TABLE `we``ird db`.nopk (a INT, b VARCHAR(5)) ENGINE=InnoDB",
		"INSERT INTO `we``ird db`.nopk VALUES (1, 'x'), (1, 'x'), (2, NULL), (NULL, '2')",
		"CREATE TABLE `we``ird db`.empty (a INT) ENGINE=InnoDB",
		"CREATE DATABASE app",
		"CREATE TABLE app.`my isam` (a INT PRIMARY KEY, b TEXT) ENGINE=MyISAM",
		"INSERT INTO app.`my isam` VALUES (1, 'one'), (2, 'two')",
		// More types; a view and a sequence are not base tables.
		"CREATE TABLE app.types (id INT PRIMARY KEY, bt BIT(10), e ENUM('a', 'b'), st SET('x', 'y'), j JSON, "+
			"geo POINT, dec1 DECIMAL(30, 10), ts TIMESTAMP(3) NULL, inv INT INVISIBLE DEFAULT 7) ENGINE=InnoDB",
		"INSERT INTO app.types (id, bt, e, st, j, geo, dec1, ts) VALUES "+
			"(1, b'1010101010', 'b', 'x,y', '{\"k\": [1, 2]}', POINT(1.5, -2), 12345678901234567890.0123456789, '2024-02-03 04:05:06.789'), "+
			"(2, NULL, NULL, '', NULL, NULL, NULL, NULL)",
		"CREATE VIEW app.v AS SELECT id FROM app.types",
		"CREATE SEQUENCE app.seq",
	)
}

func sums(t *testing.T, alg string, q drill.Querier) []manifest.TableSum {
	t.Helper()
	s, err := drill.TableSums(context.Background(), q, alg, nil)
	require.NoError(t, err)
	return s
}

// copyData copies the user schemas of src into dst with a logical dump
// (mariadb-dump | mariadb): the same data, written anew by another server.
func copyData(t *testing.T, src, dst *testdb.Server, schemas ...string) {
	t.Helper()
	dump, err := testdb.Binary("mariadb-dump")
	require.NoError(t, err)
	client, err := testdb.Binary("mariadb")
	require.NoError(t, err)
	cnf := func(s *testdb.Server) string {
		p := filepath.Join(t.TempDir(), "my.cnf")
		require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf("[client]\nuser=root\npassword=%s\nhost=127.0.0.1\nport=%d\nprotocol=TCP\n", s.Password, s.Port)), 0o600))
		return p
	}
	out, err := exec.Command(dump, append([]string{"--defaults-file=" + cnf(src), "--hex-blob", "--single-transaction", "--databases"}, schemas...)...).Output()
	require.NoError(t, err)
	load := exec.Command(client, "--defaults-file="+cnf(dst))
	load.Stdin = bytes.NewReader(out)
	msg, err := load.CombinedOutput()
	require.NoError(t, err, string(msg))
}

func TestTableSumsOnTwoServers(t *testing.T) {
	a := testdb.ForTest(t, testdb.Options{})
	b := testdb.ForTest(t, testdb.Options{ServerID: 2})
	dbA, dbB := openDB(t, a), openDB(t, b)
	fixture(t, dbA)
	copyData(t, a, b, "we`ird db", "app")
	for _, alg := range []string{manifest.SumsRowMD5, manifest.SumsChecksumTable} {
		t.Run("algorithm "+strconv.Quote(alg), func(t *testing.T) { tableSumsOnTwoServers(t, alg, dbA, dbB) })
	}
	_, err := drill.TableSums(context.Background(), dbA, "sha3_rows", nil)
	require.ErrorContains(t, err, `algorithm "sha3_rows" is unknown`, "a manifest from a newer Strata is refused, not compared wrongly")
	checkTables(t, a, dbA)
}

// tableSumsOnTwoServers checks algorithm alg: equal data on two servers
// has equal sums, and each change shows in the table changed only.
func tableSumsOnTwoServers(t *testing.T, alg string, dbA, dbB *sql.DB) {

	want := sums(t, alg, dbA)
	names := make([]string, len(want))
	for i, s := range want {
		names[i] = s.Schema + "." + s.Table
	}
	assert.Equal(t, []string{"app.my isam", "app.types", "we`ird db.empty", "we`ird db.nopk", "we`ird db.t`1"}, names,
		"base tables of the user schemas only, in order")
	assert.Equal(t, []int64{2, 2, 0, 4, 3}, []int64{want[0].Rows, want[1].Rows, want[2].Rows, want[3].Rows, want[4].Rows})
	assert.Equal(t, "0", want[2].Checksum, "an empty table")

	n, problems := drill.CompareSums(want, sums(t, alg, dbB))
	assert.Equal(t, 5, n)
	assert.Empty(t, problems, "the same data on another server has the same sums")

	// Each change of the copy shows, in the table changed and only there.
	for _, c := range []struct{ name, change, undo, table string }{
		{"one byte of a blob", "UPDATE `we``ird db`.`t``1` SET b = CONCAT(LEFT(b, 500), CHAR(ASCII(SUBSTRING(b, 501, 1)) ^ 1), SUBSTRING(b, 502)) WHERE id = 2",
			"UPDATE `we``ird db`.`t``1` SET b = CONCAT(LEFT(b, 500), CHAR(ASCII(SUBSTRING(b, 501, 1)) ^ 1), SUBSTRING(b, 502)) WHERE id = 2", "we`ird db.t`1"},
		{"NULL to the empty string", "UPDATE `we``ird db`.`t``1` SET s = '' WHERE id = 1", "UPDATE `we``ird db`.`t``1` SET s = NULL WHERE id = 1", "we`ird db.t`1"},
		{"NULL to 'N'", "UPDATE `we``ird db`.`t``1` SET s = 'N' WHERE id = 1", "UPDATE `we``ird db`.`t``1` SET s = NULL WHERE id = 1", "we`ird db.t`1"},
		{"one utf8mb4 character", "UPDATE `we``ird db`.`t``1` SET u = 'Grüße 名前 😁' WHERE id = 2", "UPDATE `we``ird db`.`t``1` SET u = 'Grüße 名前 😀' WHERE id = 2", "we`ird db.t`1"},
		{"values swapped between rows", "UPDATE `we``ird db`.nopk SET a = IF(a = 2, NULL, 2) WHERE b IS NULL OR b = '2'", "UPDATE `we``ird db`.nopk SET a = IF(b IS NULL, 2, NULL) WHERE b IS NULL OR b = '2'", "we`ird db.nopk"},
		{"a double's last digit", "UPDATE `we``ird db`.`t``1` SET d = 1.5000000000000002 WHERE id = 1", "UPDATE `we``ird db`.`t``1` SET d = 1.5 WHERE id = 1", "we`ird db.t`1"},
		{"a microsecond", "UPDATE `we``ird db`.`t``1` SET dt = '2024-01-02 03:04:05.123457' WHERE id = 1", "UPDATE `we``ird db`.`t``1` SET dt = '2024-01-02 03:04:05.123456' WHERE id = 1", "we`ird db.t`1"},
		{"a duplicate row removed", "DELETE FROM `we``ird db`.nopk WHERE a = 1 LIMIT 1", "INSERT INTO `we``ird db`.nopk VALUES (1, 'x')", "we`ird db.nopk"},
		{"a MyISAM row", "UPDATE app.`my isam` SET b = 'twO' WHERE a = 2", "UPDATE app.`my isam` SET b = 'two' WHERE a = 2", "app.my isam"},
		{"one bit", "UPDATE app.types SET bt = b'1010101011' WHERE id = 1", "UPDATE app.types SET bt = b'1010101010' WHERE id = 1", "app.types"},
		{"a JSON value", "UPDATE app.types SET j = '{\"k\": [1, 3]}' WHERE id = 1", "UPDATE app.types SET j = '{\"k\": [1, 2]}' WHERE id = 1", "app.types"},
		{"a point", "UPDATE app.types SET geo = POINT(1.5, -2.0000001) WHERE id = 1", "UPDATE app.types SET geo = POINT(1.5, -2) WHERE id = 1", "app.types"},
		{"a decimal's last digit", "UPDATE app.types SET dec1 = 12345678901234567890.0123456788 WHERE id = 1", "UPDATE app.types SET dec1 = 12345678901234567890.0123456789 WHERE id = 1", "app.types"},
		{"an invisible column", "UPDATE app.types SET inv = 8 WHERE id = 2", "UPDATE app.types SET inv = 7 WHERE id = 2", "app.types"},
		{"the empty set to NULL", "UPDATE app.types SET st = NULL WHERE id = 2", "UPDATE app.types SET st = '' WHERE id = 2", "app.types"},
	} {
		t.Run(c.name, func(t *testing.T) {
			exec1(t, dbB, c.change)
			n, problems := drill.CompareSums(want, sums(t, alg, dbB))
			assert.Equal(t, 5, n)
			if assert.Len(t, problems, 1) {
				assert.Contains(t, problems[0], "table "+c.table+" ")
			}
			exec1(t, dbB, c.undo)
			_, problems = drill.CompareSums(want, sums(t, alg, dbB))
			require.Empty(t, problems, "undone")
		})
	}

	// A table only on one side, and a skip function.
	exec1(t, dbB, "CREATE TABLE app.extra (a INT)")
	_, problems = drill.CompareSums(want, sums(t, alg, dbB))
	assert.Equal(t, []string{"table app.extra is not in the backup's sums: 0 rows, checksum 0"}, problems)
	got, err := drill.TableSums(context.Background(), dbB, alg, drill.SkipTables([]manifest.SkippedTable{{Schema: "app", Table: "extra"}, {Schema: "app", Table: "my isam"}}))
	require.NoError(t, err)
	_, problems = drill.CompareSums(want, got)
	assert.Equal(t, []string{"table app.my isam is missing: the backup recorded 2 rows, checksum " + want[0].Checksum}, problems)
	exec1(t, dbB, "DROP TABLE app.extra")
}

func checkTables(t *testing.T, a *testdb.Server, dbA *sql.DB) {
	t.Run("CheckTables", func(t *testing.T) {
		checked, problems, err := drill.CheckTables(context.Background(), dbA)
		require.NoError(t, err)
		assert.Equal(t, 5, checked)
		assert.Empty(t, problems)

		// A MyISAM data file cut short is a problem naming the table.
		exec1(t, dbA, "FLUSH TABLES app.`my isam`")
		require.NoError(t, os.Truncate(filepath.Join(a.Datadir, "app", "my@0020isam.MYD"), 5))
		exec1(t, dbA, "FLUSH TABLES")
		checked, problems, err = drill.CheckTables(context.Background(), dbA)
		require.NoError(t, err)
		assert.Equal(t, 5, checked)
		require.NotEmpty(t, problems)
		for _, p := range problems {
			assert.True(t, strings.HasPrefix(p, "table app.my isam: "), p)
		}
	})
}

// The sums read in a consistent snapshot, while a writer commits, are those
// of the data at the snapshot's recorded binlog position (and GTID).
func TestSnapshotSumsUnderConcurrentWrites(t *testing.T) {
	s := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, s)
	exec1(t, db,
		"CREATE DATABASE app",
		"CREATE TABLE app.w (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB",
		"INSERT INTO app.w VALUES (0, '0')",
		"CREATE TABLE app.m (a INT) ENGINE=MyISAM",
	)
	var base string
	require.NoError(t, db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&base))
	baseSeq := gtidSeq(t, base)

	// Each transaction i (one GTID) inserts row i and sets row 0 to i.
	var commits atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			for i := 1; ; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				tx, err := db.Begin()
				if err != nil {
					return err
				}
				if _, err := tx.Exec("INSERT INTO app.w VALUES (?, REPEAT('x', ? % 40))", i, i); err != nil {
					return err
				}
				if _, err := tx.Exec("UPDATE app.w SET v = ? WHERE id = 0", strconv.Itoa(i)); err != nil {
					return err
				}
				if err := tx.Commit(); err != nil {
					return err
				}
				commits.Store(int64(i))
			}
		}()
	}()
	waitFor(t, func() bool { return commits.Load() >= 50 })
	ts, err := drill.SnapshotSums(context.Background(), db, 0)
	require.NoError(t, err)
	after := commits.Load()
	waitFor(t, func() bool { return commits.Load() >= after+20 })
	close(stop)
	require.NoError(t, <-done)

	assert.NotEmpty(t, ts.BinlogFile)
	assert.NotZero(t, ts.BinlogPos)
	assert.Equal(t, []manifest.SkippedTable{{Schema: "app", Table: "m", Engine: "MyISAM"}}, ts.Skipped)
	require.Len(t, ts.Tables, 1)
	assert.GreaterOrEqual(t, ts.Seconds, 0.0)
	k := gtidSeq(t, ts.GTIDSet) - baseSeq // transactions in the snapshot
	require.Greater(t, k, int64(0))
	require.Less(t, k, commits.Load(), "the snapshot was taken while the writer ran")

	// The GTID is the one of the recorded position.
	var gtid string
	require.NoError(t, db.QueryRow("SELECT BINLOG_GTID_POS(?, ?)", ts.BinlogFile, ts.BinlogPos).Scan(&gtid))
	assert.Equal(t, ts.GTIDSet, gtid)

	// Bring the table back to its state after transaction k: the sums
	// equal the snapshot's.
	exec1(t, db, fmt.Sprintf("DELETE FROM app.w WHERE id > %d", k), fmt.Sprintf("UPDATE app.w SET v = '%d' WHERE id = 0", k))
	got, err := drill.TableSums(context.Background(), db, ts.Algorithm, drill.SkipTables(ts.Skipped))
	require.NoError(t, err)
	n, problems := drill.CompareSums(ts.Tables, got)
	assert.Equal(t, 1, n)
	assert.Empty(t, problems)
	assert.Equal(t, k+1, got[0].Rows)

	// One transaction more or less would not match.
	exec1(t, db, fmt.Sprintf("DELETE FROM app.w WHERE id = %d", k), fmt.Sprintf("UPDATE app.w SET v = '%d' WHERE id = 0", k-1))
	got, err = drill.TableSums(context.Background(), db, ts.Algorithm, drill.SkipTables(ts.Skipped))
	require.NoError(t, err)
	_, problems = drill.CompareSums(ts.Tables, got)
	assert.Len(t, problems, 1)

	// The size cap refuses before reading.
	_, err = drill.SnapshotSums(context.Background(), db, 1)
	assert.ErrorIs(t, err, drill.ErrTooLarge)
}

func TestRecorder(t *testing.T) {
	s := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, s)
	exec1(t, db, "CREATE DATABASE app", "CREATE TABLE app.t (a INT PRIMARY KEY) ENGINE=InnoDB", "INSERT INTO app.t VALUES (1), (2)")
	open := func(context.Context) (*sql.DB, error) { return s.DB("") }

	r := drill.NewRecorder(context.Background(), open, 0)
	r.Begin()
	r.Begin() // once
	ts, err := r.Wait(context.Background())
	require.NoError(t, err)
	require.Len(t, ts.Tables, 1)
	assert.Equal(t, int64(2), ts.Tables[0].Rows)

	// Never begun: nothing to wait for.
	_, err = drill.NewRecorder(context.Background(), open, 0).Wait(context.Background())
	assert.ErrorIs(t, err, drill.ErrNotStarted)

	// A failure is returned, not hidden.
	r = drill.NewRecorder(context.Background(), func(context.Context) (*sql.DB, error) { return nil, errors.New("refused") }, 0)
	r.Begin()
	_, err = r.Wait(context.Background())
	assert.ErrorContains(t, err, "refused")
}

// TestSnapshotSumsDoNotWaitForDDL: a table whose metadata lock another
// session holds (LOCK TABLES ... WRITE, as an ALTER would) makes the sums
// fail with the server's lock wait timeout, not wait for the lock (the
// server's default is a day, the backup waiting behind it).
func TestSnapshotSumsDoNotWaitForDDL(t *testing.T) {
	s := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, s)
	exec1(t, db, "CREATE DATABASE app", "CREATE TABLE app.t (a INT PRIMARY KEY) ENGINE=InnoDB", "INSERT INTO app.t VALUES (1)")
	defer drill.SetLockWait(time.Second)()
	ctx := context.Background()
	locker, err := db.Conn(ctx)
	require.NoError(t, err)
	defer locker.Close()
	_, err = locker.ExecContext(ctx, "LOCK TABLES app.t WRITE")
	require.NoError(t, err)

	wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	_, err = drill.SnapshotSums(wctx, db, 0)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the sums waited for the lock")
	var me *mysql.MySQLError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, uint16(1205), me.Number, "lock wait timeout")

	_, err = locker.ExecContext(ctx, "UNLOCK TABLES")
	require.NoError(t, err)
	ts, err := drill.SnapshotSums(ctx, db, 0)
	require.NoError(t, err)
	assert.Len(t, ts.Tables, 1)
}

// TestRecorderOutlastsWaitTimeout: the recorder's connection, idle from
// the start of the backup until the tool blocks commits, is not closed by
// the server's wait_timeout.
func TestRecorderOutlastsWaitTimeout(t *testing.T) {
	s := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, s)
	exec1(t, db, "CREATE DATABASE app", "CREATE TABLE app.t (a INT PRIMARY KEY) ENGINE=InnoDB", "INSERT INTO app.t VALUES (1)",
		"SET GLOBAL wait_timeout = 1")
	var opened atomic.Bool
	r := drill.NewRecorder(context.Background(), func(context.Context) (*sql.DB, error) {
		defer opened.Store(true)
		return s.DB("")
	}, 0)
	defer r.Abort()
	waitFor(t, opened.Load)
	// Idle for three times the server's wait_timeout.
	time.Sleep(3 * time.Second)
	r.Begin()
	ts, err := r.Wait(context.Background())
	require.NoError(t, err)
	assert.Len(t, ts.Tables, 1)
}

// TestSnapshotSumsNeedGlobalSelect: a user without SELECT ON *.* (the
// backup grants alone) sees no table in information_schema; its sums are
// refused rather than recorded as an empty set.
func TestSnapshotSumsNeedGlobalSelect(t *testing.T) {
	s := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, s)
	exec1(t, db, "CREATE DATABASE app", "CREATE TABLE app.t (a INT PRIMARY KEY) ENGINE=InnoDB", "INSERT INTO app.t VALUES (1)",
		"CREATE USER 'backup'@'%' IDENTIFIED BY 'pw'",
		"GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE ON *.* TO 'backup'@'%'")
	ctx := context.Background()
	// Global privileges apply from the next connection: a pool per step.
	sums := func() (*manifest.TableSums, error) {
		u, err := sql.Open("mysql", fmt.Sprintf("backup:pw@tcp(127.0.0.1:%d)/", s.Port))
		require.NoError(t, err)
		defer u.Close()
		return drill.SnapshotSums(ctx, u, 0)
	}
	_, err := sums()
	require.ErrorIs(t, err, drill.ErrNoSelect)
	assert.ErrorContains(t, err, "GRANT SELECT ON *.*")

	exec1(t, db, "GRANT SELECT ON *.* TO 'backup'@'%'")
	ts, err := sums()
	require.NoError(t, err)
	require.Len(t, ts.Tables, 1)
	assert.Equal(t, "t", ts.Tables[0].Table)

	// Through the user's default role.
	exec1(t, db, "REVOKE SELECT ON *.* FROM 'backup'@'%'", "CREATE ROLE reader", "GRANT SELECT ON *.* TO reader",
		"GRANT reader TO 'backup'@'%'", "SET DEFAULT ROLE reader FOR 'backup'@'%'")
	ts, err = sums()
	require.NoError(t, err)
	assert.Len(t, ts.Tables, 1)
}

func TestHeartbeat(t *testing.T) {
	s := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, s)
	ctx := context.Background()

	_, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat")
	assert.ErrorIs(t, err, drill.ErrNoHeartbeat, "no schema")
	w := &drill.HeartbeatWriter{DB: db, Table: "strata.heartbeat", ID: "db1", Host: "agent-1"}
	require.NoError(t, w.Ensure(ctx))
	require.NoError(t, w.Ensure(ctx), "again: the table exists")
	_, err = drill.ReadHeartbeat(ctx, db, "strata.heartbeat")
	assert.ErrorIs(t, err, drill.ErrNoHeartbeat, "no row")

	var before, after time.Time
	require.NoError(t, db.QueryRow("SELECT UTC_TIMESTAMP(6)").Scan(&before))
	require.NoError(t, w.Beat(ctx))
	require.NoError(t, db.QueryRow("SELECT UTC_TIMESTAMP(6)").Scan(&after))
	got, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat")
	require.NoError(t, err)
	assert.Equal(t, time.UTC, got.Location())
	assert.False(t, got.Before(before.Truncate(time.Microsecond)) || got.After(after), "%v not in [%v, %v]", got, before, after)
	var host string
	var rows int
	require.NoError(t, db.QueryRow("SELECT host, (SELECT COUNT(*) FROM strata.heartbeat) FROM strata.heartbeat WHERE id = 'db1'").Scan(&host, &rows))
	assert.Equal(t, "agent-1", host)
	assert.Equal(t, 1, rows)

	// Run creates the table when it is missing and keeps the row current.
	exec1(t, db, "DROP DATABASE strata")
	rctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); w.Run(rctx, 10*time.Millisecond, zap.NewNop()) }()
	var first time.Time
	waitFor(t, func() bool { first, err = drill.ReadHeartbeat(ctx, db, "strata.heartbeat"); return err == nil })
	waitFor(t, func() bool {
		next, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat")
		return err == nil && next.After(first)
	})
	// It survives the table's loss.
	exec1(t, db, "DROP TABLE strata.heartbeat")
	waitFor(t, func() bool { _, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat"); return err == nil })
	cancel()
	<-stopped

	_, err = drill.ReadHeartbeat(ctx, db, "no dot")
	assert.Error(t, err)
	assert.NotErrorIs(t, err, drill.ErrNoHeartbeat)
}

// TestHeartbeatNotOnReadOnlyOrReplica: the writer never writes into a
// read-only server or a replica (a user with SUPER would pass read_only:
// the write would be an errant GTID of the replica), and writes again
// once the server is a writable primary.
func TestHeartbeatNotOnReadOnlyOrReplica(t *testing.T) {
	s := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, s)
	ctx := context.Background()
	w := &drill.HeartbeatWriter{DB: db, Table: "strata.heartbeat", ID: "db1", Host: "agent-1"}
	gtid := func() string {
		var g string
		require.NoError(t, db.QueryRow("SELECT @@global.gtid_binlog_pos").Scan(&g))
		return g
	}
	noSchema := func(msg string) {
		var n int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'strata'").Scan(&n))
		assert.Zero(t, n, msg)
	}

	exec1(t, db, "SET GLOBAL read_only = 1")
	before := gtid()
	assert.ErrorIs(t, w.Ensure(ctx), drill.ErrNotWritable, "read_only")
	assert.ErrorIs(t, w.Beat(ctx), drill.ErrNotWritable, "read_only")
	noSchema("read_only: nothing created")
	assert.Equal(t, before, gtid(), "read_only: no transaction")

	exec1(t, db, "SET GLOBAL read_only = 0", "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 1")
	before = gtid()
	assert.ErrorIs(t, w.Ensure(ctx), drill.ErrNotWritable, "replica")
	assert.ErrorIs(t, w.Beat(ctx), drill.ErrNotWritable, "replica")
	noSchema("replica: nothing created")
	assert.Equal(t, before, gtid(), "replica: no transaction")

	// Promoted: Run writes.
	exec1(t, db, "RESET SLAVE ALL")
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() { defer close(stopped); w.Run(rctx, 10*time.Millisecond, zap.NewNop()) }()
	waitFor(t, func() bool { _, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat"); return err == nil })
	cancel()
	<-stopped
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 60s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gtidSeq is the sequence number of a single-domain GTID set "0-1-42".
func gtidSeq(t *testing.T, set string) int64 {
	t.Helper()
	if set == "" {
		return 0
	}
	parts := strings.Split(set, "-")
	require.Len(t, parts, 3, "GTID set %q", set)
	n, err := strconv.ParseInt(parts[2], 10, 64)
	require.NoError(t, err)
	return n
}

// CHECKSUM TABLE, like COUNT(*), is a consistent read: inside a
// consistent snapshot it sees the snapshot, not what commits after it, and
// it does not end the transaction (checked on the server, not assumed).
func TestChecksumTableReadsTheSnapshot(t *testing.T) {
	srv := testdb.ForTest(t, testdb.Options{})
	db := openDB(t, srv)
	exec1(t, db, "CREATE DATABASE s", "CREATE TABLE s.t (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB",
		"INSERT INTO s.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
	require.NoError(t, err)
	before, err := drill.ChecksumTable(ctx, conn, "s", "t")
	require.NoError(t, err)
	exec1(t, db, "UPDATE s.t SET v = 'changed' WHERE id = 2", "INSERT INTO s.t VALUES (4, 'd')")
	in, err := drill.ChecksumTable(ctx, conn, "s", "t")
	require.NoError(t, err)
	assert.Equal(t, before, in, "the snapshot's rows, not the committed change")
	var inTrx int
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT @@in_transaction").Scan(&inTrx))
	assert.Equal(t, 1, inTrx, "CHECKSUM TABLE does not commit the snapshot")
	_, err = conn.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	after, err := drill.ChecksumTable(ctx, conn, "s", "t")
	require.NoError(t, err)
	assert.Equal(t, int64(3), before.Rows)
	assert.Equal(t, int64(4), after.Rows)
	assert.NotEqual(t, before.Checksum, after.Checksum)

	_, err = drill.ChecksumTable(ctx, conn, "s", "gone")
	require.Error(t, err, "a table that does not exist")
}
