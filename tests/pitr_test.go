package tests

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// startArchive starts BinlogArchiveWorkflow for an instance.
func (s *stack) startArchive(instance string, runFor time.Duration) client.WorkflowRun {
	s.t.Helper()
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "archive/" + instance, TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.ArchiveWorkflowName, workflows.ArchiveRequest{Instance: instance, RunFor: runFor})
	require.NoError(s.t, err)
	return run
}

// stopArchive signals the archive workflow to stop and waits for it.
func (s *stack) stopArchive(run client.WorkflowRun) workflows.ArchiveState {
	s.t.Helper()
	require.NoError(s.t, s.client.SignalWorkflow(s.ctx, run.GetID(), "", workflows.ArchiveStopSignal, nil))
	var st workflows.ArchiveState
	require.NoError(s.t, s.client.GetWorkflow(s.ctx, run.GetID(), "").Get(s.ctx, &st))
	return st
}

// waitArchived waits until the archive holds the given GTID (MariaDB
// domain-server-seq, MySQL uuid:N).
func (s *stack) waitArchived(instance, g string) {
	s.t.Helper()
	st := &binlog.Store{B: s.repo.Backend(), Instance: instance}
	require.Eventually(s.t, func() bool {
		ix, err := st.ReadIndex(s.ctx)
		if err != nil || ix.Last() == nil {
			return false
		}
		for i := len(ix.Segments) - 1; i >= 0; i-- {
			if last := ix.Segments[i].LastGTID; last != "" {
				return gtidAtLeast(s.flavor, last, g)
			}
		}
		return false
	}, time.Minute, 50*time.Millisecond, "archive reaches %s", g)
}

// gtidAtLeast reports whether the transaction got comes at or after want,
// both of one source (MariaDB: the sequence number of the domain; MySQL:
// the transaction number of the uuid).
func gtidAtLeast(fl flavor.Name, got, want string) bool {
	if fl == flavor.MySQL {
		i := strings.LastIndexByte(want, ':')
		w, err1 := gtid.ParseOne(fl, want)
		g, err2 := gtid.Parse(fl, got)
		return err1 == nil && err2 == nil && i > 0 && g.Last(want[:i]) >= w.Last(want[:i])
	}
	w, err1 := gtid.ParseMariaGTID(want)
	g, err2 := gtid.ParseMariaGTID(got)
	return err1 == nil && err2 == nil && g.Domain == w.Domain && g.Seq >= w.Seq
}

// serverFlavor asks the server what it is.
func serverFlavor(t *testing.T, db *sql.DB) flavor.Flavor {
	t.Helper()
	var version, comment string
	require.NoError(t, db.QueryRow("SELECT VERSION(), @@version_comment").Scan(&version, &comment))
	return flavor.Detect(version, comment)
}

// gtidPos is the GTID of the server's last transaction of its own: MariaDB's
// @@gtid_binlog_pos (one domain in these tests), MySQL's server_uuid:N.
func gtidPos(t *testing.T, db *sql.DB) string {
	t.Helper()
	var g string
	if serverFlavor(t, db).Name == flavor.MySQL {
		var uuid, executed string
		require.NoError(t, db.QueryRow("SELECT @@server_uuid, @@GLOBAL.gtid_executed").Scan(&uuid, &executed))
		set, err := gtid.Parse(flavor.MySQL, executed)
		require.NoError(t, err)
		return fmt.Sprintf("%s:%d", uuid, set.Last(uuid))
	}
	require.NoError(t, db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&g))
	return g
}

// masterPos is the server's current binlog file and position.
func masterPos(t *testing.T, db *sql.DB) (string, uint32) {
	t.Helper()
	rows, err := db.Query(serverFlavor(t, db).Words().BinlogStatus)
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next(), "binary logging is on")
	cols, err := rows.Columns()
	require.NoError(t, err)
	var file string
	var pos uint32
	dest := []any{&file, &pos}
	for len(dest) < len(cols) {
		dest = append(dest, new(sql.NullString))
	}
	require.NoError(t, rows.Scan(dest...))
	return file, pos
}

// pitr restores to a target and returns a connection to the started server.
func (s *stack) pitr(target binlog.Target, backupID string) (*sql.DB, workflows.RestoreResult, error) {
	s.t.Helper()
	dir := filepath.Join(s.t.TempDir(), "pitr")
	port, err := testdb.FreePort()
	require.NoError(s.t, err)
	var res workflows.RestoreResult
	_, err = s.run("restore/h1:"+dir, workflows.RestoreWorkflowName, workflows.RestoreRequest{
		Instance: "db1", BackupID: backupID, TargetDir: dir, Start: true, Port: port, Target: target,
	}, &res)
	if err != nil {
		return nil, res, err
	}
	s.t.Cleanup(func() { stopPID(res.Server.PID) })
	db, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
	require.NoError(s.t, err)
	s.t.Cleanup(func() { db.Close() })
	return db, res, nil
}

func TestPointInTimeRestoreToTimeGTIDAndPosition(t *testing.T) {
	forFlavors(t, testPointInTimeRestoreToTimeGTIDAndPosition)
}

func testPointInTimeRestoreToTimeGTIDAndPosition(t *testing.T, fl flavor.Name) {
	s := newStack(t, withFlavor(fl))
	db := s.numbered()
	arch := s.startArchive("db1", 20*time.Second)

	insertRows(t, db, 1, 50)
	s.backup("base", "full")
	before := time.Now().Add(-time.Hour)

	insertRows(t, db, 51, 150)
	time.Sleep(2200 * time.Millisecond) // a quiet stretch: the time target lies in it
	quiet := time.Now().Add(-time.Second).Truncate(time.Second)
	insertRows(t, db, 151, 200)
	gtid200 := gtidPos(t, db)
	insertRows(t, db, 201, 220)
	file220, pos220 := masterPos(t, db)
	insertRows(t, db, 221, 300)
	s.waitArchived("db1", gtidPos(t, db))

	for _, c := range []struct {
		name   string
		target binlog.Target
		rows   int
	}{
		{"time", binlog.Target{Time: quiet}, 150},
		{"gtid", binlog.Target{GTID: gtid200}, 200},
		{"position", binlog.Target{File: file220, Pos: pos220}, 220},
	} {
		rdb, res, err := s.pitr(c.target, "")
		require.NoError(t, err, c.name)
		n, hi := countRows(t, rdb)
		assert.Equal(t, c.rows, n, "%s: rows", c.name)
		assert.Equal(t, c.rows, hi, "%s: no gap", c.name)
		assert.Equal(t, "base", res.BackupID)
		require.NotNil(t, res.Replay)
		t.Logf("%s: base %s, replayed %d transactions to %s in %.2fs (whole restore %.2fs)", c.name, res.BackupID,
			res.Replay.Transactions, c.target, res.Replay.Seconds, res.Seconds)
	}

	// Targets outside the window are refused with the window in the message.
	_, _, err := s.pitr(binlog.Target{Time: before}, "")
	requireAppError(t, err, "OutsideRecoveryWindow", "recovery windows")
	_, _, err = s.pitr(binlog.Target{Time: time.Now().Add(time.Hour)}, "")
	requireAppError(t, err, "OutsideRecoveryWindow", "base")

	st := s.stopArchive(arch)
	assert.True(t, st.Stopping)
	assert.Empty(t, st.LastError)
}
