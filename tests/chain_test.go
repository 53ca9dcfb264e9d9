package tests

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// insertRows commits rows from..to of e2e.numbered, one transaction each.
func insertRows(t *testing.T, db *sql.DB, from, to int) {
	t.Helper()
	for id := from; id <= to; id++ {
		_, err := db.Exec("INSERT INTO e2e.numbered (id, payload) VALUES (?, REPEAT('y', 200))", id)
		require.NoError(t, err)
	}
}

// backup runs BackupWorkflow and returns its result.
func (s *stack) backup(id, typ string) workflows.BackupResult {
	s.t.Helper()
	return s.backupOf("db1", id, typ)
}

// restoreAndOpen restores a backup into a new datadir, starts a server on it
// and returns a connection; the server is stopped when the test ends.
func (s *stack) restoreAndOpen(id string) (*sql.DB, workflows.RestoreResult) {
	s.t.Helper()
	return s.restoreAndOpenOf("db1", id)
}

// restoreAndOpenOf is restoreAndOpen for another instance.
func (s *stack) restoreAndOpenOf(instance, id string) (*sql.DB, workflows.RestoreResult) {
	s.t.Helper()
	target := filepath.Join(s.t.TempDir(), "restore-"+id)
	port, err := testdb.FreePort()
	require.NoError(s.t, err)
	var res workflows.RestoreResult
	_, err = s.run("restore/h1:"+target, workflows.RestoreWorkflowName, workflows.RestoreRequest{
		Instance: instance, BackupID: id, TargetDir: target, Start: true, Port: port,
	}, &res)
	require.NoError(s.t, err, "restore %s", id)
	s.t.Cleanup(func() { stopPID(res.Server.PID) })
	db, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
	require.NoError(s.t, err)
	s.t.Cleanup(func() { db.Close() })
	return db, res
}

// flushCheckpoint lets InnoDB flush every dirty page so that its checkpoint
// catches up with the log, as it does on a server some time after a burst of
// writes. mariabackup copies the redo log from the last checkpoint, so
// without this the seed data's redo would ride along in every incremental.
func flushCheckpoint(t *testing.T, db *sql.DB) {
	t.Helper()
	var before int64
	require.NoError(t, db.QueryRow("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='INNODB_CHECKPOINT_AGE'").Scan(&before))
	_, err := db.Exec("SET GLOBAL innodb_io_capacity_max = 100000, GLOBAL innodb_io_capacity = 50000, " +
		"GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001, GLOBAL innodb_max_dirty_pages_pct = 0")
	require.NoError(t, err)
	var age int64
	require.Eventually(t, func() bool {
		return db.QueryRow("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='INNODB_CHECKPOINT_AGE'").Scan(&age) == nil && age < 1<<20
	}, 2*time.Minute, 100*time.Millisecond, "InnoDB checkpoint age stays at %d", age)
	t.Logf("InnoDB checkpoint age %d -> %d bytes", before, age)
}

func countRows(t *testing.T, db *sql.DB) (n, hi int) {
	t.Helper()
	require.NoError(t, db.QueryRow("SELECT COUNT(*), COALESCE(MAX(id),0) FROM e2e.numbered").Scan(&n, &hi))
	return n, hi
}

func TestIncrementalAndDifferentialChains(t *testing.T) {
	s := newStack(t)
	db := s.numbered()
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 128<<20, nil))
	static, err := demo.Checksums(s.ctx, db, "demo")
	require.NoError(t, err)
	flushCheckpoint(t, db)

	// No incremental without a base.
	var none workflows.BackupResult
	_, err = s.run("backup/db1/too-early", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: "too-early", Type: "incremental"}, &none)
	requireAppError(t, err, "NoBaseBackup", "--auto-full")

	insertRows(t, db, 1, 100)
	full := s.backup("full1", "full")
	insertRows(t, db, 101, 200)
	inc1 := s.backup("inc1", "incremental")
	insertRows(t, db, 201, 300)
	inc2 := s.backup("inc2", "incremental")
	insertRows(t, db, 301, 400)
	diff := s.backup("diff1", "differential")

	assert.Equal(t, "full1", inc1.ParentID)
	assert.Equal(t, "inc1", inc2.ParentID)
	assert.Equal(t, "full1", diff.ParentID)
	assert.Equal(t, full.ToLSN, inc1.FromLSN)
	assert.Equal(t, inc1.ToLSN, inc2.FromLSN)
	assert.Equal(t, full.ToLSN, diff.FromLSN)
	assert.Equal(t, 3, inc2.ChainLength)
	assert.Equal(t, 2, diff.ChainLength)

	// An incremental after changing one small table is a small fraction of
	// the full. (It always carries the non-InnoDB files whole — the mysql.*
	// Aria tables, about 5 MB — so the database must not be tiny.)
	t.Logf("full %d raw / %d stored; inc1 %d raw / %d stored (%.2f%% of the full); inc2 %d raw; diff %d raw",
		full.RawSize, full.StoredSize, inc1.RawSize, inc1.StoredSize, 100*float64(inc1.RawSize)/float64(full.RawSize), inc2.RawSize, diff.RawSize)
	assert.Less(t, float64(inc1.RawSize), 0.05*float64(full.RawSize), "incremental raw size < 5%% of the full")
	assert.Less(t, float64(inc1.StoredSize), 0.05*float64(full.StoredSize), "incremental stored size < 5%% of the full")
	assert.Greater(t, diff.RawSize, inc2.RawSize/2, "a differential carries every change since the full")

	// Each of the four restores exactly the data committed at its consistent point.
	for _, c := range []struct {
		id    string
		rows  int
		chain []string
	}{
		{"full1", 100, []string{"full1"}},
		{"inc1", 200, []string{"full1", "inc1"}},
		{"inc2", 300, []string{"full1", "inc1", "inc2"}},
		{"diff1", 400, []string{"full1", "diff1"}},
	} {
		rdb, res := s.restoreAndOpen(c.id)
		assert.Equal(t, c.chain, res.Chain, c.id)
		n, hi := countRows(t, rdb)
		assert.Equal(t, c.rows, n, "rows restored from %s", c.id)
		assert.Equal(t, c.rows, hi, "no gap in %s", c.id)
		got, err := demo.Checksums(s.ctx, rdb, "demo")
		require.NoError(t, err)
		assert.Empty(t, demo.CompareChecksums(static, got), c.id)
		t.Logf("restore %s: chain %v, %.2fs (download %.2fs, prepare %.2fs)", c.id, res.Chain, res.Seconds, res.Stats.FetchSeconds, res.Stats.PrepareSeconds)
	}
}
