package xbstream_test

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/internal/xbstream"
)

// A real mariabackup stream passes the checker, including a table whose
// tablespace lives outside the datadir (CREATE TABLE ... DATA DIRECTORY):
// mariabackup streams it under a name relative to the datadir (with its
// .isl link file), so refusing absolute member names never refuses a
// genuine MariaDB backup.
func TestRealMariabackupStreamPassesTheChecker(t *testing.T) {
	testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := testdb.ForTest(t, testdb.Options{})
	db, err := srv.DB("")
	require.NoError(t, err)
	defer db.Close()
	ext := t.TempDir()
	for _, q := range []string{
		"CREATE DATABASE x",
		"CREATE TABLE x.remote (id INT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB DATA DIRECTORY='" + ext + "'",
		"INSERT INTO x.remote VALUES (1, 'a'), (2, 'b')",
		"CREATE TABLE x.local (id INT PRIMARY KEY) ENGINE=InnoDB",
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	require.FileExists(t, filepath.Join(ext, "x", "remote.ibd"), "the tablespace is outside the datadir")

	tool, err := physical.ForFlavor(flavor.MariaDB, physical.Paths{})
	require.NoError(t, err)
	var checker *xbstream.Checker
	_, err = tool.StreamBackup(ctx, physical.BackupParams{
		Endpoint:   mysqlx.Endpoint{Socket: srv.Socket, User: srv.User, Password: srv.Password},
		Datadir:    srv.Datadir,
		ScratchDir: t.TempDir(),
	}, func(r io.Reader) error {
		checker = xbstream.NewChecker(nopCloser{io.Discard})
		if _, err := io.Copy(checker, r); err != nil {
			return err
		}
		return checker.Close()
	})
	require.NoError(t, err, "the checker refused a genuine mariabackup stream")
	require.Greater(t, checker.Members(), 10)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
