package physical

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/internal/xbstream"
)

func mysqlServer(t *testing.T) (*testdb.Server, *sql.DB, string) {
	t.Helper()
	testdb.RequireMySQL(t)
	srv := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL})
	db, err := srv.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	mysqld, err := testdb.MySQLBinary("mysqld")
	require.NoError(t, err)
	return srv, db, mysqld
}

func cloneParams(srv *testdb.Server, mysqld, id string) CloneParams {
	return CloneParams{
		Endpoint:      mysqlx.Endpoint{Socket: srv.Socket, User: srv.User, Password: srv.Password},
		Datadir:       srv.Datadir,
		BackupID:      id,
		InstallPlugin: true,
		Mysqld:        mysqld,
	}
}

func mustExec(t *testing.T, db *sql.DB, qs ...string) {
	t.Helper()
	for _, q := range qs {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
}

// serverUUID and the number of transactions executed so far.
func executed(t *testing.T, db *sql.DB) (string, int64) {
	t.Helper()
	var uuid, set string
	require.NoError(t, db.QueryRow("SELECT @@server_uuid, @@GLOBAL.gtid_executed").Scan(&uuid, &set))
	s, err := gtid.Parse(flavor.MySQL, set)
	require.NoError(t, err)
	return uuid, s.Last(uuid)
}

// A clone backup taken while one writer commits a row per transaction
// restores exactly the rows of the transactions its recorded GTID set
// names, and its recorded binlog position is where the first transaction
// not in the set starts on the source.
func TestCloneBackupUnderWritesIsAnExactPrefix(t *testing.T) {
	srv, db, mysqld := mysqlServer(t)
	mustExec(t, db, "CREATE DATABASE w", "CREATE DATABASE empty_schema",
		"CREATE TABLE w.rows (seq BIGINT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB",
		"CREATE TABLE w.bulk (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB",
		"INSERT INTO w.bulk (pad) SELECT REPEAT('x', 255) FROM information_schema.COLUMNS a, information_schema.COLUMNS b LIMIT 60000")
	uuid, base := executed(t, db)

	// One writer, one row per transaction: row seq is transaction base+seq.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wctx, stopWriter := context.WithCancel(ctx)
	var committed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := int64(1); wctx.Err() == nil; seq++ {
			if _, err := db.ExecContext(wctx, "INSERT INTO w.rows VALUES (?, REPEAT('r', 200))", seq); err != nil {
				return
			}
			committed.Store(seq)
		}
	}()
	for committed.Load() < 50 {
		time.Sleep(10 * time.Millisecond)
	}

	ext := filepath.Join(t.TempDir(), "restored")
	require.NoError(t, os.Mkdir(ext, 0o750))
	var phases []string
	p := cloneParams(srv, mysqld, "full-1")
	p.Tick = func(pr CloneProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != pr.Phase {
			phases = append(phases, pr.Phase)
		}
	}
	var streamed int64
	out, err := CloneBackup(ctx, p, func(r io.Reader) error {
		cr := &countReader{r: r}
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := ExtractClone(pr, ext)
			_ = pr.CloseWithError(err)
			done <- err
		}()
		c := xbstream.NewChecker(pw)
		_, err := io.Copy(c, cr)
		_ = pw.CloseWithError(errors.Join(err, c.Close()))
		streamed = cr.n
		return errors.Join(err, <-done)
	})
	// Keep writing a little after the backup: the next transaction exists.
	time.Sleep(200 * time.Millisecond)
	stopWriter()
	wg.Wait()
	require.NoError(t, err)
	t.Logf("clone: %.2fs, %d files, %d bytes streamed, data %d bytes; lower %s, consistent %s, set %s; writer committed %d",
		out.CloneSeconds, out.Files, streamed, out.DataBytes, gtid.FormatPosition(out.Lower), gtid.FormatPosition(out.Position), out.GTIDSet, committed.Load())
	assert.Equal(t, []string{"pre-flight", "cloning", "consistent point", "streaming"}, phases)
	_, err = os.Stat(CloneDir(filepath.Dir(srv.Datadir), "full-1"))
	assert.True(t, os.IsNotExist(err), "the clone directory is removed")
	assert.NoFileExists(t, CloneDir(filepath.Dir(srv.Datadir), "full-1")+cloneOwnerSuffix, "and its owner file")

	last := out.GTIDSet.Last(uuid)
	n := last - base // rows in the backup
	require.Greater(t, n, int64(0), "the backup holds some of the writer's rows")
	require.Less(t, n, committed.Load(), "the writer committed rows after the backup's point")
	assert.True(t, out.GTIDSet.Equal(gtid.MustParse(flavor.MySQL, uuid+":1-"+strconv.FormatInt(last, 10))), "one contiguous interval: %s", out.GTIDSet)
	assert.LessOrEqual(t, out.Lower.Compare(out.Position), 0, "the consistent point is at or after the lower bound")

	// The recorded position is where transaction last+1 starts.
	var logName, typ, info string
	var pos, serverID, end uint64
	require.NoError(t, db.QueryRow(fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d LIMIT 1", out.Position.Name, out.Position.Pos)).
		Scan(&logName, &pos, &typ, &serverID, &end, &info))
	assert.Equal(t, "Gtid", typ)
	assert.Contains(t, info, fmt.Sprintf("'%s:%d'", uuid, last+1))

	// The stream restores with no prepare step: the server starts on it.
	for _, f := range []string{"strata-server.err", "auto.cnf", CloneDirsMember} {
		assert.NoFileExists(t, filepath.Join(ext, f), "the consistent-point server's files are not in the backup")
	}
	rs, err := testdb.StartExisting(ctx, ext, testdb.Options{Flavor: flavor.MySQL, Password: srv.Password, BaseDir: t.TempDir()})
	require.NoError(t, err)
	defer rs.Stop()
	rdb, err := rs.DB("")
	require.NoError(t, err)
	defer rdb.Close()
	var count, minSeq, maxSeq int64
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM w.rows").Scan(&count, &minSeq, &maxSeq))
	assert.Equal(t, []int64{n, 1, n}, []int64{count, minSeq, maxSeq}, "exactly the rows of the transactions in the GTID set")
	var restoredSet string
	require.NoError(t, rdb.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&restoredSet))
	assert.True(t, out.GTIDSet.Equal(gtid.MustParse(flavor.MySQL, restoredSet)), "restored gtid_executed %s", restoredSet)
	var bulk int64
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*) FROM w.bulk").Scan(&bulk))
	assert.Equal(t, int64(60000), bulk)
	_, err = rdb.Exec("CREATE TABLE empty_schema.t (id INT PRIMARY KEY)")
	assert.NoError(t, err, "the empty schema's directory was restored")
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// cloneRunning reports what of a clone is left on the server: a CLONE
// statement in the processlist, and the state clone_status shows.
func cloneRunning(t *testing.T, db *sql.DB) (int, string) {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'CLONE %'").Scan(&n))
	var state string
	_ = db.QueryRow("SELECT STATE FROM performance_schema.clone_status").Scan(&state)
	return n, state
}

// A cancel while the clone runs kills it on the server and removes the
// clone directory; a cancel while the stream is read removes it too.
func TestCloneCancelLeavesNothing(t *testing.T) {
	srv, db, mysqld := mysqlServer(t)
	mustExec(t, db, "CREATE DATABASE w",
		"CREATE TABLE w.bulk (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB",
		"INSERT INTO w.bulk (pad) SELECT REPEAT('x', 255) FROM information_schema.COLUMNS a, information_schema.COLUMNS b LIMIT 150000")
	parent := filepath.Dir(srv.Datadir)

	t.Run("mid-clone", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		p := cloneParams(srv, mysqld, "cancel-clone")
		var once sync.Once
		seenDir := false
		p.Tick = func(pr CloneProgress) {
			if pr.Phase != "cloning" {
				return
			}
			// Cancel once the clone is under way on the server.
			go func() {
				deadline := time.Now().Add(20 * time.Second)
				for time.Now().Before(deadline) {
					if _, err := os.Stat(CloneDir(parent, "cancel-clone")); err == nil {
						seenDir = true
						once.Do(cancel)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		_, err := CloneBackup(ctx, p, func(r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		require.ErrorIs(t, err, context.Canceled)
		require.True(t, seenDir, "the cancel came while the clone directory existed")
		_, serr := os.Stat(CloneDir(parent, "cancel-clone"))
		assert.True(t, os.IsNotExist(serr), "no clone directory is left")
		assert.NoFileExists(t, CloneDir(parent, "cancel-clone")+cloneOwnerSuffix)
		n, state := cloneRunning(t, db)
		assert.Zero(t, n, "no CLONE statement is left running")
		assert.Equal(t, "Failed", state, "the clone was killed on the server, not left to finish")
	})

	t.Run("mid-stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		p := cloneParams(srv, mysqld, "cancel-stream")
		_, err := CloneBackup(ctx, p, func(r io.Reader) error {
			buf := make([]byte, 1<<20)
			var read int
			for {
				n, err := r.Read(buf)
				read += n
				if read > 4<<20 {
					cancel()
				}
				if err != nil {
					return err
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		})
		require.ErrorIs(t, err, context.Canceled)
		_, serr := os.Stat(CloneDir(parent, "cancel-stream"))
		assert.True(t, os.IsNotExist(serr), "no clone directory is left")
		n, _ := cloneRunning(t, db)
		assert.Zero(t, n)
	})

	t.Run("leftover of a killed attempt is removed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dir := CloneDir(parent, "leftover")
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "w"), 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "w", "stale.ibd"), []byte("stale"), 0o600))
		var names []string
		_, err := CloneBackup(ctx, cloneParams(srv, mysqld, "leftover"), func(r io.Reader) error {
			ext := t.TempDir()
			if _, err := ExtractClone(r, ext); err != nil {
				return err
			}
			return filepath.Walk(ext, func(p string, _ os.FileInfo, err error) error {
				names = append(names, p)
				return err
			})
		})
		require.NoError(t, err)
		assert.NotContains(t, strings.Join(names, "\n"), "stale.ibd")
		assert.NoDirExists(t, dir)
	})
}

// The pre-flight refuses, with what to fix: a missing plugin it may not
// install, a user without BACKUP_ADMIN, and too little free space.
func TestClonePreflightErrors(t *testing.T) {
	srv, db, mysqld := mysqlServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	never := func(io.Reader) error { t.Error("nothing is streamed after a failed pre-flight"); return nil }

	var plugins int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'clone'").Scan(&plugins))
	require.Zero(t, plugins, "a fresh server has no clone plugin")
	p := cloneParams(srv, mysqld, "no-plugin")
	p.InstallPlugin = false
	_, err := CloneBackup(ctx, p, never)
	require.ErrorIs(t, err, ErrClonePlugin)
	assert.Contains(t, err.Error(), "INSTALL PLUGIN clone SONAME 'mysql_clone.so'")
	assert.Contains(t, err.Error(), "backup.clone_install_plugin")

	p = cloneParams(srv, mysqld, "no-space")
	var asked string
	p.FreeSpace = func(dir string) (int64, error) { asked = dir; return 10 << 20, nil }
	_, err = CloneBackup(ctx, p, never)
	require.ErrorIs(t, err, ErrCloneSpace)
	assert.Equal(t, filepath.Dir(srv.Datadir), asked, "free space is checked beside the datadir")
	assert.Contains(t, err.Error(), "10485760 bytes free")
	assert.Regexp(t, `clone of \d+ bytes of data`, err.Error())
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'clone' AND PLUGIN_STATUS = 'ACTIVE'").Scan(&plugins))
	assert.Equal(t, 1, plugins, "allowed, the backup installed the plugin")

	mustExec(t, db, "CREATE USER 'weak'@'localhost' IDENTIFIED BY 'weak-pw'", "GRANT RELOAD, REPLICATION CLIENT ON *.* TO 'weak'@'localhost'")
	p = cloneParams(srv, mysqld, "weak")
	p.Endpoint.User, p.Endpoint.Password = "weak", "weak-pw"
	_, err = CloneBackup(ctx, p, never)
	require.ErrorIs(t, err, ErrClonePrivilege)
	assert.Contains(t, err.Error(), "GRANT BACKUP_ADMIN ON *.* TO 'weak'@'localhost'")
}

// A source created with settings that a server on its clone must share
// (an 8 KiB page, lower_case_table_names=1) is cloned and its consistent
// point read: the throwaway server takes them from the source.
func TestCloneOfANonDefaultDatadir(t *testing.T) {
	testdb.RequireMySQL(t)
	fixed := []string{"--innodb-page-size=8192", "--lower-case-table-names=1"}
	srv := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL, InitArgs: fixed, ExtraArgs: fixed})
	db, err := srv.DB("")
	require.NoError(t, err)
	defer db.Close()
	mysqld, err := testdb.MySQLBinary("mysqld")
	require.NoError(t, err)
	mustExec(t, db, "CREATE DATABASE W", "CREATE TABLE W.T (id INT PRIMARY KEY)", "INSERT INTO W.T VALUES (1)")
	var executed string
	require.NoError(t, db.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&executed))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := CloneBackup(ctx, cloneParams(srv, mysqld, "fixed"), func(r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	require.NoError(t, err)
	assert.True(t, out.GTIDSet.Equal(gtid.MustParse(flavor.MySQL, executed)), "%s vs %s", out.GTIDSet, executed)
}
