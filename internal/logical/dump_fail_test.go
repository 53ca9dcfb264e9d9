package logical_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
)

// A table altered after the consistent point must not give a dump whose
// data does not match its CREATE TABLE: the dump fails and says why. The
// ALTER runs while the first (biggest) table's file is being stored, on
// the smallest table, which the one worker reads last: the ALTER does not
// wait for the dump's metadata locks, and the worker meets the new table.
func TestDumpFailsOnDDLDuringDump(t *testing.T) {
	forFlavors(t, func(t *testing.T, fl flavor.Name) {
		ctx := context.Background()
		_, db := startServer(t, fl)
		execAll(t, db,
			"CREATE DATABASE d",
			"CREATE TABLE d.big (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB",
			"CREATE TABLE d.mid (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB",
			"CREATE TABLE d.small (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
			"INSERT INTO d.small VALUES (1,1),(2,2)")
		for i := 0; i < 10; i++ {
			var vals []string
			for k := 1; k <= 1000; k++ {
				vals = append(vals, fmt.Sprintf("(%d, REPEAT('x', 100))", i*1000+k))
			}
			execAll(t, db, "INSERT INTO d.big VALUES "+strings.Join(vals, ","))
		}
		execAll(t, db, "INSERT INTO d.mid SELECT id, v FROM d.big WHERE id <= 200", "ANALYZE TABLE d.big, d.mid, d.small")
		sink := newRecordingSink(t.TempDir(), 0)
		var once sync.Once
		var alterErr error
		sink.hook = func(f *logical.File) {
			if f.Kind != logical.KindData || f.Object != "big" {
				return
			}
			once.Do(func() {
				_, alterErr = db.ExecContext(ctx, "ALTER TABLE d.small ADD COLUMN z INT NOT NULL DEFAULT 7")
			})
		}
		_, err := logical.Dump(ctx, db, sink, logical.DumpOptions{Parallelism: 1})
		require.NoError(t, alterErr)
		require.Error(t, err)
		require.Contains(t, err.Error(), "during the dump")
		require.Contains(t, err.Error(), "`small`")
		t.Logf("%s: %v", fl, err)
	})
}

// A table lock held elsewhere makes FLUSH TABLES WITH READ LOCK wait; the
// dump gives up after LockWaitTimeout with a message that says what to do,
// and the server's other sessions are not left blocked.
func TestDumpLockWaitTimeout(t *testing.T) {
	forFlavors(t, func(t *testing.T, fl flavor.Name) {
		ctx := context.Background()
		_, db := startServer(t, fl)
		execAll(t, db, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY) ENGINE=InnoDB")
		holder, err := db.Conn(ctx)
		require.NoError(t, err)
		defer holder.Close()
		_, err = holder.ExecContext(ctx, "LOCK TABLES d.t WRITE")
		require.NoError(t, err)
		start := time.Now()
		_, err = logical.Dump(ctx, db, &logical.DirSink{Dir: t.TempDir()}, logical.DumpOptions{LockWaitTimeout: time.Second})
		took := time.Since(start)
		require.Error(t, err)
		require.Contains(t, err.Error(), "FLUSH TABLES WITH READ LOCK waited")
		require.Less(t, took, 15*time.Second)
		_, err = holder.ExecContext(ctx, "UNLOCK TABLES")
		require.NoError(t, err)
		// Nothing of the failed dump holds a lock: writes go through.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = db.ExecContext(wctx, "INSERT INTO d.t VALUES (1)")
		require.NoError(t, err)
	})
}

// A failing sink fails the dump (no partial success), and the global read
// lock does not outlive it.
func TestDumpSinkFailureReleasesLock(t *testing.T) {
	ctx := context.Background()
	_, db := startServer(t, flavor.MariaDB)
	execAll(t, db, "CREATE DATABASE d", "CREATE TABLE d.m (id INT PRIMARY KEY) ENGINE=MyISAM", "INSERT INTO d.m VALUES (1)")
	_, err := logical.Dump(ctx, db, failingSink{}, logical.DumpOptions{})
	require.ErrorContains(t, err, "disk full")
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = db.ExecContext(wctx, "INSERT INTO d.m VALUES (2)")
	require.NoError(t, err, "the read lock is gone")
}

type failingSink struct{}

func (failingSink) Put(ctx context.Context, f *logical.File, data []byte) error {
	if f.Kind == logical.KindData {
		return errDiskFull
	}
	return nil
}

var errDiskFull = &mysql.MySQLError{Number: 0, Message: "disk full"}

func TestDumpRefusesSmallPool(t *testing.T) {
	db, err := sql.Open("mysql", "u:p@tcp(127.0.0.1:1)/")
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(2)
	_, err = logical.Dump(context.Background(), db, &logical.DirSink{Dir: t.TempDir()}, logical.DumpOptions{Parallelism: 2})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "allows 2 connections"), err.Error())
	_, err = logical.Dump(context.Background(), db, &logical.DirSink{Dir: t.TempDir()}, logical.DumpOptions{Include: []string{"a.[b"}})
	require.ErrorContains(t, err, "filter pattern \"a.[b\": syntax error in pattern")
}
