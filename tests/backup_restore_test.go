package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// writer commits numbered rows, one per transaction, and remembers the GTID
// of each commit.
type writer struct {
	// mysql: the source is a MySQL (GTIDs are server_uuid:N).
	mysql bool
	mu    sync.Mutex
	gtids []string // gtids[i] is the GTID of row i+1
	err   error
}

func (w *writer) run(ctx context.Context, db *sql.DB) {
	conn, err := db.Conn(context.Background())
	if err != nil {
		w.err = err
		return
	}
	defer conn.Close()
	for id := 1; ctx.Err() == nil; id++ {
		if _, err := conn.ExecContext(context.Background(),
			"INSERT INTO e2e.numbered (id, payload) VALUES (?, REPEAT('x', 200))", id); err != nil {
			w.err = fmt.Errorf("insert %d: %w", id, err)
			return
		}
		g, err := lastGTID(conn, w.mysql)
		if err != nil {
			w.err = err
			return
		}
		w.mu.Lock()
		w.gtids = append(w.gtids, g)
		w.mu.Unlock()
	}
}

// lastGTID is the GTID of the connection's last commit: MariaDB's
// @@last_gtid; on MySQL, with one writer, server_uuid:N of the last
// transaction in @@gtid_executed.
func lastGTID(conn *sql.Conn, mysql bool) (string, error) {
	var g string
	if !mysql {
		err := conn.QueryRowContext(context.Background(), "SELECT @@last_gtid").Scan(&g)
		return g, err
	}
	var uuid, executed string
	if err := conn.QueryRowContext(context.Background(), "SELECT @@server_uuid, @@GLOBAL.gtid_executed").Scan(&uuid, &executed); err != nil {
		return "", err
	}
	set, err := gtid.Parse(flavor.MySQL, executed)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d", uuid, set.Last(uuid)), nil
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.gtids)
}

func TestBackupUnderWritesRestoresAnExactPrefix(t *testing.T) {
	forFlavors(t, testBackupUnderWritesRestoresAnExactPrefix)
}

func testBackupUnderWritesRestoresAnExactPrefix(t *testing.T, fl flavor.Name) {
	s := newStack(t, withTableSums(), withFlavor(fl))
	db, err := s.src.DB("")
	require.NoError(t, err)
	defer db.Close()

	// Static data of every column type, written before the backup.
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 8<<20, nil))
	_, err = db.Exec("CREATE DATABASE e2e")
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE e2e.numbered (id INT PRIMARY KEY, payload VARCHAR(255)) ENGINE=InnoDB")
	require.NoError(t, err)
	before, err := demo.Checksums(s.ctx, db, "demo")
	require.NoError(t, err)

	// A writer commits numbered rows before, during and after the backup.
	wctx, stopWriter := context.WithCancel(s.ctx)
	w := &writer{mysql: fl == flavor.MySQL}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(wctx, db) }()
	require.Eventually(t, func() bool { return w.count() > 50 }, time.Minute, 10*time.Millisecond)

	var bres workflows.BackupResult
	_, err = s.run("backup/db1/b1", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: "b1"}, &bres)
	require.NoError(t, err)
	during := w.count()
	require.Eventually(t, func() bool { return w.count() > during+50 }, time.Minute, 10*time.Millisecond)
	stopWriter()
	wg.Wait()
	require.NoError(t, w.err)
	t.Logf("backup: %d raw bytes, %d stored, %d chunks, %.2fs, commits blocked %.3fs, gtid %s at %s:%d; writer committed %d rows",
		bres.RawSize, bres.StoredSize, bres.Chunks, bres.DurationSeconds, bres.CommitsBlockedSeconds, bres.GTIDSet, bres.BinlogFile, bres.BinlogPos, w.count())

	m, err := s.repo.ReadManifest(s.ctx, "db1", "b1")
	require.NoError(t, err)
	assert.Equal(t, "full", m.Type)
	assert.Equal(t, string(fl), m.ServerFlavor, "the manifest records the flavor the agent detected")
	if fl == flavor.MySQL {
		assert.Equal(t, "clone", m.Tool, "MySQL without xtrabackup is backed up by clone")
	} else {
		assert.Equal(t, "mariabackup", m.Tool)
		assert.Greater(t, m.ToLSN, uint64(0))
	}
	assert.NotEmpty(t, m.GTIDSet)
	assert.NotEmpty(t, m.BinlogFile)
	assert.Equal(t, "zstd", m.Compression)
	assert.Greater(t, len(m.Chunks), 1)
	assert.Less(t, m.StoredSize, m.RawSize)

	// Restore into a new datadir and start a server on it.
	target := filepath.Join(t.TempDir(), "restored")
	port, err := testdb.FreePort()
	require.NoError(t, err)
	var rres workflows.RestoreResult
	_, err = s.run("restore/h1:"+target, workflows.RestoreWorkflowName, workflows.RestoreRequest{
		Instance: "db1", BackupID: "b1", TargetDir: target, Start: true, Port: port,
	}, &rres)
	require.NoError(t, err)
	require.NotNil(t, rres.Server)
	t.Cleanup(func() { stopPID(rres.Server.PID) })
	t.Logf("restore: %.2fs (download %.2fs, prepare %.2fs, move-back %.2fs), server %s started in %.2fs",
		rres.Seconds, rres.Stats.FetchSeconds, rres.Stats.PrepareSeconds, rres.Stats.MoveBackSeconds, rres.Server.ServerVersion, rres.Server.StartSeconds)
	_, err = os.Stat(filepath.Join(filepath.Dir(target), ".strata-restore-restored"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "staging dir removed")

	rdb, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
	require.NoError(t, err)
	defer rdb.Close()

	// The restored rows are an exact prefix 1..K of the writes: no gap, no
	// partial transaction.
	var n, lo, hi int
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*), COALESCE(MIN(id),0), COALESCE(MAX(id),0) FROM e2e.numbered").Scan(&n, &lo, &hi))
	require.Greater(t, n, 50, "rows written before the backup are restored")
	assert.Equal(t, 1, lo)
	assert.Equal(t, n, hi, "no gap in the restored ids")
	assert.Less(t, n, w.count(), "rows written after the backup are not in it")

	// The table sums the backup recorded under writes: at its consistent
	// point, they are the restored server's. (MariaDB only: they are taken
	// while mariabackup blocks commits.)
	if fl == flavor.MySQL {
		assert.Nil(t, m.TableSums)
	} else {
		require.NotNil(t, m.TableSums, "table sums recorded under writes")
	}
	if m.TableSums != nil {
		t.Logf("table sums: %d tables in %.3fs, at backup point %v (%s:%d, backup %s:%d)", len(m.TableSums.Tables), m.TableSums.Seconds,
			m.TableSums.AtBackupPoint, m.TableSums.BinlogFile, m.TableSums.BinlogPos, m.BinlogFile, m.BinlogPos)
	}
	if m.TableSums != nil && m.TableSums.AtBackupPoint {
		got, err := drill.TableSums(s.ctx, rdb, m.TableSums.Algorithm, drill.SkipTables(m.TableSums.Skipped))
		require.NoError(t, err)
		_, problems := drill.CompareSums(m.TableSums.Tables, got)
		assert.Empty(t, problems, "the restored data has the sums of the backup's consistent point")
	}

	// ... and agree with the consistent point in the manifest: the GTID of the
	// last restored row is the manifest's GTID, and the binlog event at the
	// manifest's position begins the next row's transaction.
	if fl == flavor.MySQL {
		// MySQL's set holds every transaction: exactly those of the
		// restored rows (and the schema before them), nothing after.
		set, err := gtid.Parse(flavor.MySQL, m.GTIDSet)
		require.NoError(t, err)
		has, err := set.ContainsGTID(w.gtids[n-1])
		require.NoError(t, err)
		assert.True(t, has, "manifest GTID set holds the last restored commit %s", w.gtids[n-1])
		has, err = set.ContainsGTID(w.gtids[n])
		require.NoError(t, err)
		assert.False(t, has, "manifest GTID set does not hold the next commit %s", w.gtids[n])
		var restored string
		require.NoError(t, rdb.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&restored))
		got, err := gtid.Parse(flavor.MySQL, restored)
		require.NoError(t, err)
		assert.True(t, got.Equal(set), "the restored server's gtid_executed %s is the manifest's %s", restored, m.GTIDSet)
	} else {
		assert.Equal(t, w.gtids[n-1], m.GTIDSet, "manifest GTID is the last restored commit")
	}
	var logName, evType, info string
	var pos, serverID, endPos uint64
	require.NoError(t, db.QueryRow(fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d LIMIT 1", m.BinlogFile, m.BinlogPos)).
		Scan(&logName, &pos, &evType, &serverID, &endPos, &info))
	assert.Equal(t, "Gtid", evType)
	next := "GTID " + w.gtids[n]
	if fl == flavor.MySQL {
		next = "'" + w.gtids[n] + "'" // SET @@SESSION.GTID_NEXT= 'uuid:N'
	}
	assert.Contains(t, info, next, "next event after the consistent point is row %d's transaction", n+1)

	// Tables not written during the backup have the source's checksums.
	after, err := demo.Checksums(s.ctx, rdb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(before, after))
	assert.Len(t, after, len(demo.Tables()))

	// No workflow input, result or history event carries the password.
	assertNoSecretInHistory(t, s, s.src.Password, "backup/db1/b1", "restore/h1:"+target)
	mj, err := json.Marshal(m)
	require.NoError(t, err)
	assert.NotContains(t, string(mj), s.src.Password)

	// Restoring into the now non-empty target, where the restored server
	// runs, is refused and leaves both intact.
	var again workflows.RestoreResult
	_, err = s.run("restore/h1:"+target+"#2", workflows.RestoreWorkflowName, workflows.RestoreRequest{
		Instance: "db1", BackupID: "b1", TargetDir: target,
	}, &again)
	requireAppError(t, err, "TargetInUse", "Strata never stops it")
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*) FROM e2e.numbered").Scan(&n))
	assert.Equal(t, hi, n)
}

// assertNoSecretInHistory reads every event of the workflows' histories
// (inputs, results, heartbeats, failures) and checks the secret is absent.
func assertNoSecretInHistory(t *testing.T, s *stack, secret string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		it := s.client.GetWorkflowHistory(s.ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		events := 0
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			b, err := protojson.Marshal(ev)
			require.NoError(t, err)
			require.NotContains(t, string(b), secret, "history of %s, event %d (%s)", id, ev.EventId, ev.EventType)
			events++
		}
		require.Greater(t, events, 3, "history of %s was read", id)
	}
}

// requireAppError checks that err carries an application error of the type
// whose message contains want.
func requireAppError(t *testing.T, err error, typ, want string) {
	t.Helper()
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want %s, got %v", typ, err)
	assert.Equal(t, typ, ae.Type(), ae.Error())
	assert.Contains(t, ae.Error(), want)
}

func stopPID(pid int) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 600; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
