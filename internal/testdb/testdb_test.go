package testdb_test

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/testdb"
)

func TestServerLifecycle(t *testing.T) {
	var serverLog bytes.Buffer // only read after Stop, which waits for the copy
	s := testdb.ForTest(t, testdb.Options{ServerID: 7, Stdout: &serverLog})
	require.NotZero(t, s.Port)
	require.NotEmpty(t, s.Password)
	require.Equal(t, "root", s.User)
	require.Less(t, len(s.Socket), 100)

	ctx := context.Background()
	db, err := s.DB("")
	require.NoError(t, err)
	defer db.Close()

	var logBin int
	var gtidPos, binlogFormat, charset string
	var strict, slaveUpdates, serverID, trxCommit, syncBinlog int
	require.NoError(t, db.QueryRowContext(ctx,
		"SELECT @@log_bin, @@gtid_binlog_pos, @@binlog_format, @@gtid_strict_mode, @@log_slave_updates, "+
			"@@server_id, @@innodb_flush_log_at_trx_commit, @@sync_binlog, @@character_set_server").
		Scan(&logBin, &gtidPos, &binlogFormat, &strict, &slaveUpdates, &serverID, &trxCommit, &syncBinlog, &charset))
	require.Equal(t, 1, logBin)
	require.Empty(t, gtidPos, "root setup must not be binlogged")
	require.Equal(t, "ROW", binlogFormat)
	require.Equal(t, 1, strict)
	require.Equal(t, 1, slaveUpdates)
	require.Equal(t, 7, serverID)
	require.Equal(t, 1, trxCommit)
	require.Equal(t, 1, syncBinlog)
	require.Equal(t, "utf8mb4", charset)

	_, err = db.ExecContext(ctx, "CREATE DATABASE t1")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "CREATE TABLE t1.items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "INSERT INTO t1.items VALUES (1, ?), (2, ?)", "héllo wörld", "emoji 🚀")
	require.NoError(t, err)

	db2, err := s.DB("t1")
	require.NoError(t, err)
	defer db2.Close()
	var name string
	require.NoError(t, db2.QueryRowContext(ctx, "SELECT name FROM items WHERE id = 2").Scan(&name))
	require.Equal(t, "emoji 🚀", name)

	require.NoError(t, db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&gtidPos))
	require.Regexp(t, `^0-7-\d+$`, gtidPos)
	var binlogs int
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	require.NoError(t, err)
	for rows.Next() {
		binlogs++
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.Positive(t, binlogs)

	// The socket DSN works too.
	sdb, err := sql.Open("mysql", s.SocketDSN(""))
	require.NoError(t, err)
	require.NoError(t, sdb.PingContext(ctx))
	sdb.Close()

	// Wrong password fails, over TCP and socket.
	for _, dsn := range []string{s.DSN(""), s.SocketDSN("")} {
		cfg, err := mysql.ParseDSN(dsn)
		require.NoError(t, err)
		cfg.Passwd = "wrong"
		bad, err := sql.Open("mysql", cfg.FormatDSN())
		require.NoError(t, err)
		err = bad.PingContext(ctx)
		bad.Close()
		require.Error(t, err)
		require.Contains(t, err.Error(), "Access denied")
	}

	// Graceful stop is idempotent and leaves no process behind.
	pid := s.PID()
	require.NoError(t, s.Stop())
	require.NoError(t, s.Stop())
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH)
	require.Contains(t, serverLog.String(), "ready for connections")
	require.Contains(t, s.LogTail(5), "Shutdown complete")
	_, err = os.Stat(s.Socket)
	require.True(t, os.IsNotExist(err))

	// The datadir can be started again with the same password; data is intact.
	s2, err := testdb.StartExisting(ctx, s.Datadir, testdb.Options{Password: s.Password, ServerID: 7})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Stop() })
	db3, err := s2.DB("t1")
	require.NoError(t, err)
	defer db3.Close()
	var n int
	require.NoError(t, db3.QueryRowContext(ctx, "SELECT COUNT(*) FROM items").Scan(&n))
	require.Equal(t, 2, n)

	// Kill simulates a crash; InnoDB recovers on the next start.
	_, err = db3.ExecContext(ctx, "INSERT INTO items VALUES (3, 'after restart')")
	require.NoError(t, err)
	db3.Close()
	s2.Kill()
	require.NoError(t, s2.Stop())

	_, err = testdb.StartExisting(ctx, s.Datadir, testdb.Options{Password: "wrong"})
	require.Error(t, err, "StartExisting must check the password")

	s3, err := testdb.StartExisting(ctx, s.Datadir, testdb.Options{Password: s.Password})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s3.Stop() })
	db4, err := s3.DB("t1")
	require.NoError(t, err)
	defer db4.Close()
	require.NoError(t, db4.QueryRowContext(ctx, "SELECT COUNT(*) FROM items").Scan(&n))
	require.Equal(t, 3, n)
	require.NoError(t, s3.Stop())
}

func TestInitFailureIncludesLog(t *testing.T) {
	testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := testdb.Init(ctx, testdb.Options{
		BaseDir:   t.TempDir(),
		ExtraArgs: []string{"--no-such-option-for-testdb=1"},
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "no-such-option-for-testdb")
}

func TestInitRequiresBaseDir(t *testing.T) {
	_, err := testdb.Init(context.Background(), testdb.Options{})
	require.Error(t, err)
}

func TestStartExistingMissingDatadir(t *testing.T) {
	_, err := testdb.StartExisting(context.Background(), filepath.Join(t.TempDir(), "nope"), testdb.Options{})
	require.Error(t, err)
}

func TestFreePort(t *testing.T) {
	p, err := testdb.FreePort()
	require.NoError(t, err)
	require.Positive(t, p)
}

// A MySQL server from the chroot starts with GTIDs and binary logging on,
// root logs in with its password over TCP and the socket, and a fresh
// server has an empty executed GTID set; StartExisting starts it again on
// its datadir after a stop.
func TestMySQLServerFromTheChroot(t *testing.T) {
	srv := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL})
	require.Equal(t, flavor.MySQL, srv.Flavor)
	db, err := srv.DB("")
	require.NoError(t, err)
	var version, gtidMode, executed string
	var logBin int
	require.NoError(t, db.QueryRow("SELECT VERSION(), @@gtid_mode, @@gtid_executed, @@log_bin").Scan(&version, &gtidMode, &executed, &logBin))
	require.Equal(t, flavor.MySQL, flavor.Detect(version, "").Name)
	require.Equal(t, "ON", gtidMode)
	require.Equal(t, "", executed, "setting up root must not write GTIDs")
	require.Equal(t, 1, logBin)
	_, err = db.Exec("CREATE DATABASE t1; CREATE TABLE t1.a (id INT PRIMARY KEY); INSERT INTO t1.a VALUES (1)")
	require.NoError(t, err)
	require.NoError(t, db.QueryRow("SELECT @@gtid_executed").Scan(&executed))
	require.NotEmpty(t, executed)
	db.Close()

	sock, err := sql.Open("mysql", srv.SocketDSN(""))
	require.NoError(t, err)
	require.NoError(t, sock.Ping())
	sock.Close()

	require.NoError(t, srv.Stop())
	again, err := testdb.StartExisting(context.Background(), srv.Datadir, testdb.Options{Flavor: flavor.MySQL, Password: srv.Password})
	require.NoError(t, err)
	defer again.Stop()
	db, err = again.DB("t1")
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM a").Scan(&n))
	require.Equal(t, 1, n)
}
