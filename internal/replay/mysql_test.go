package replay

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

// mysqlArchive is a MySQL server's clone taken at a binlog position, the
// archive of what followed, and the table's contents after each
// transaction since.
type mysqlArchive struct {
	src       *testdb.Server
	clone     string
	uuid      string
	st        *binlog.Store
	startFile string
	// clonePos is the position in startFile right after the clone, where
	// a replay that skips nothing by GTID starts.
	clonePos uint32
	// after[k] is the table's contents right after transaction k of the
	// source's uuid committed, and pos[k] its end position in startFile.
	after map[int64]string
	pos   map[int64]uint32
	first int64 // the first transaction after the clone
	last  int64
	// time is a second at whose end transaction timeK is the last.
	time  time.Time
	timeK int64
}

func contents(t *testing.T, db *sql.DB) string {
	t.Helper()
	var s sql.NullString
	require.NoError(t, db.QueryRow("SELECT GROUP_CONCAT(id, '=', v ORDER BY id) FROM a.t").Scan(&s))
	return s.String
}

func binlogStatus(t *testing.T, db *sql.DB) (string, uint32, gtid.Set) {
	t.Helper()
	var file, doDB, ignoreDB, executed string
	var pos uint32
	require.NoError(t, db.QueryRow("SHOW BINARY LOG STATUS").Scan(&file, &pos, &doDB, &ignoreDB, &executed))
	return file, pos, gtid.MustParse(flavor.MySQL, executed)
}

func newMySQLArchive(t *testing.T) *mysqlArchive {
	t.Helper()
	testdb.RequireMySQL(t)
	src := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL})
	db, err := src.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	a := &mysqlArchive{src: src, clone: filepath.Join(t.TempDir(), "clone"), after: map[int64]string{}, pos: map[int64]uint32{}}
	require.NoError(t, db.QueryRow("SELECT @@server_uuid").Scan(&a.uuid))
	for _, q := range []string{"CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY, v INT)",
		"INSERT INTO a.t VALUES (1, 1), (2, 2), (3, 3)", "INSTALL PLUGIN clone SONAME 'mysql_clone.so'", "FLUSH BINARY LOGS",
		// In the file the replay starts from, before the clone: the
		// replay skips them by GTID (applied twice, they would fail).
		"INSERT INTO a.t VALUES (4, 4)", "INSERT INTO a.t VALUES (5, 5)",
		"CLONE LOCAL DATA DIRECTORY = '" + a.clone + "'"} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	var executed gtid.Set
	a.startFile, a.clonePos, executed = binlogStatus(t, db)
	a.first = executed.Last(a.uuid) + 1
	for i := 1; i <= 30; i++ {
		q := "INSERT INTO a.t VALUES (?, ?)"
		args := []any{100 + i, i}
		switch i % 3 {
		case 1:
			q, args = "UPDATE a.t SET v = v + ? WHERE id = ?", []any{i, 1 + i%3}
		case 2:
			if i > 10 {
				q, args = "DELETE FROM a.t WHERE id = ?", []any{100 + i - 5}
			}
		}
		_, err := db.Exec(q, args...)
		require.NoError(t, err)
		file, pos, executed := binlogStatus(t, db)
		require.Equal(t, a.startFile, file)
		n := executed.Last(a.uuid)
		a.after[n], a.pos[n], a.last = contents(t, db), pos, n
		if i == 20 {
			// A second of its own for the transactions up to here, as
			// binlog timestamps have one-second resolution.
			var now int64
			require.NoError(t, db.QueryRow("SELECT UNIX_TIMESTAMP()").Scan(&now))
			a.timeK, a.time = n, time.Unix(now, 0).UTC()
			require.Eventually(t, func() bool {
				var later int64
				return db.QueryRow("SELECT UNIX_TIMESTAMP()").Scan(&later) == nil && later > now
			}, 3*time.Second, 50*time.Millisecond)
		}
	}
	a.st = &binlog.Store{B: memory.New(), Instance: "m"}
	_, err = binlog.Run(context.Background(), a.st, db, binlog.Source{Host: "127.0.0.1", Port: uint16(src.Port), User: "root",
		Password: src.Password, Flavor: "mysql", ReplicaID: 4000000009}, binlog.Options{FlushInterval: 100 * time.Millisecond, RunFor: 1500 * time.Millisecond})
	require.NoError(t, err)
	return a
}

// restore copies the clone into a new datadir.
func (a *mysqlArchive) restore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	out, err := exec.Command("cp", "-a", a.clone, dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return dir
}

func (a *mysqlArchive) build(t *testing.T, target binlog.Target, start uint32) *binlog.Built {
	t.Helper()
	ix, err := a.st.ReadIndex(context.Background())
	require.NoError(t, err)
	segs, err := ix.Covering(a.startFile, start)
	require.NoError(t, err)
	require.Equal(t, flavor.MySQL, segs[0].FlavorName())
	built, err := binlog.Build(context.Background(), a.st, segs, a.startFile, start, target, t.TempDir())
	require.NoError(t, err)
	return built
}

func mysqlTool(t *testing.T, name string) string {
	t.Helper()
	p, err := testdb.MySQLBinary(name)
	require.NoError(t, err)
	return p
}

// replayAndCheck replays to target with method and checks that the
// datadir holds exactly the transactions up to k of the source.
func (a *mysqlArchive) replayAndCheck(t *testing.T, method string, target binlog.Target, k int64) {
	t.Helper()
	a.replayFromAndCheck(t, method, target, k, 4)
}

// replayFromAndCheck is replayAndCheck with the replay starting at position
// start of the clone's binlog file.
func (a *mysqlArchive) replayFromAndCheck(t *testing.T, method string, target binlog.Target, k int64, start uint32) {
	t.Helper()
	built := a.build(t, target, start)
	require.Equal(t, a.uuid+":"+strconv.FormatInt(k, 10), built.LastGTID)
	dir := a.restore(t)
	res, err := Run(context.Background(), Params{Method: method, Flavor: flavor.MySQL, Datadir: dir, Files: built.Files,
		StartPos: built.StartPos, LastGTID: built.LastGTID, Threads: 4, BufferPool: 128 << 20,
		Mariadbd: mysqlTool(t, "mysqld"), BinlogTool: mysqlTool(t, "mysqlbinlog"), Client: mysqlTool(t, "mysql")})
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "strata-server.err"))
		t.Logf("replay server log:\n%s", b)
	}
	require.NoError(t, err)
	assert.Equal(t, method, res.Method)
	srv, err := testdb.StartExisting(context.Background(), dir, testdb.Options{Flavor: flavor.MySQL, Password: a.src.Password})
	require.NoError(t, err)
	defer srv.Stop()
	db, err := srv.DB("")
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, a.after[k], contents(t, db), "the table as it was right after transaction %d", k)
	var executed string
	require.NoError(t, db.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&executed))
	set := gtid.MustParse(flavor.MySQL, executed)
	assert.Equal(t, k, set.Last(a.uuid), "transactions up to and including %d applied, none after (%s)", k, executed)
	t.Logf("%s to %s: %d transactions in %.2fs", method, target, built.Txns, res.Seconds)
}

// A replay onto a clone of a MySQL server, through MySQL's own applier
// and through mysqlbinlog | mysql, lands on exactly the transaction of a
// GTID, a position or a time target. It starts at the start of the binlog file
// the clone was taken in: the transactions of that file the clone holds
// are skipped by their GTIDs.
func TestMySQLReplayLandsOnTheTarget(t *testing.T) {
	a := newMySQLArchive(t)
	k := a.first + 17
	require.Less(t, k, a.last)
	gtidTarget := binlog.Target{GTID: a.uuid + ":" + strconv.FormatInt(k, 10)}
	t.Run("replica/gtid", func(t *testing.T) { a.replayAndCheck(t, MethodReplica, gtidTarget, k) })
	t.Run("replica/position", func(t *testing.T) {
		a.replayAndCheck(t, MethodReplica, binlog.Target{File: a.startFile, Pos: a.pos[k-5]}, k-5)
	})
	t.Run("replica/time", func(t *testing.T) { a.replayAndCheck(t, MethodReplica, binlog.Target{Time: a.time}, a.timeK) })
	t.Run("client/gtid", func(t *testing.T) { a.replayAndCheck(t, MethodClient, gtidTarget, k) })
	// From the clone's own position, in the middle of the file, as a
	// restore of a clone backup replays: the relay log keeps the file's
	// Previous_gtids event, which MySQL's applier requires before a GTID.
	t.Run("replica/gtid-from-the-clone-position", func(t *testing.T) {
		a.replayFromAndCheck(t, MethodReplica, gtidTarget, k, a.clonePos)
	})
	t.Run("client/gtid-from-the-clone-position", func(t *testing.T) {
		a.replayFromAndCheck(t, MethodClient, gtidTarget, k, a.clonePos)
	})
}

// The flavor, not what is installed, picks the replay server and its
// options: a MySQL replay never starts mariadbd, even when it is the only
// server in PATH, and each flavor gets its own option names.
func TestReplayServerFollowsTheFlavor(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "mariadbd")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	t.Setenv("PATH", dir)
	_, err := serverBinary(flavor.MySQL, "")
	require.ErrorIs(t, err, server.ErrNoBinary)
	assert.Contains(t, err.Error(), "tools.mysqld")
	got, err := serverBinary(flavor.MariaDB, "")
	require.NoError(t, err)
	assert.Equal(t, fake, got)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mysqld"), []byte("#!/bin/sh\nexit 1\n"), 0o755))
	got, err = serverBinary(flavor.MySQL, "")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "mysqld"), got)

	opts := func(f flavor.Name) string {
		return strings.Join(append(serverTuning(f), replicaOptions(f, 4)...), " ")
	}
	my, maria := opts(flavor.MySQL), opts(flavor.MariaDB)
	assert.NotContains(t, my, "slave", "MySQL 8.4+ removed the slave option names")
	assert.Contains(t, my, "--replica-parallel-workers=4")
	assert.Contains(t, my, "--gtid-mode=ON")
	assert.NotContains(t, maria, "replica-")
	assert.Contains(t, maria, "--slave-parallel-threads=4")
}
