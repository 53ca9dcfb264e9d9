package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// An archived instance of the same server that keeps only the newest full.
const archivedRetained extraInstance = `
  - id: arc
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    retention: {keep_full: 1}
`

// Prune removes the archived binlogs that only the deleted backup needed,
// shows them in a dry run first, and leaves the kept backup's recovery
// window whole: a point-in-time restore from it still reaches the end.
func TestPruneTrimsTheBinlogArchiveToTheKeptWindow(t *testing.T) {
	s := newStack(t, archivedRetained)
	db := s.numbered()
	arch := s.startArchive("arc", 30*time.Second)
	flush := func() {
		_, err := db.Exec("FLUSH BINARY LOGS")
		require.NoError(t, err)
	}
	insertRows(t, db, 1, 50)
	flush()
	s.backupOf("arc", "a1", "full")
	insertRows(t, db, 51, 100)
	flush()
	insertRows(t, db, 101, 110)
	a2 := s.backupOf("arc", "a2", "full")
	insertRows(t, db, 111, 150)
	last := gtidPos(t, db)
	s.waitArchived("arc", last)

	st := &binlog.Store{B: s.repo.Backend(), Instance: "arc"}
	m2, err := s.repo.ReadManifest(s.ctx, "arc", "a2")
	require.NoError(t, err)
	before, err := st.ReadIndex(s.ctx)
	require.NoError(t, err)
	var older int
	for _, seg := range before.Segments {
		if seg.File < m2.BinlogFile {
			older++
		}
	}
	require.Positive(t, older, "the archive holds binlog files older than a2's (%s)", m2.BinlogFile)

	out, err := s.cli("prune", "arc", "--dry-run")
	require.NoError(t, err, out)
	assert.Contains(t, out, fmt.Sprintf("would delete binlog archive: %d segments", older), out)
	assert.Contains(t, out, "the recovery window of backup a2", out)
	after, err := st.ReadIndex(s.ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(after.Segments), len(before.Segments))
	assert.Equal(t, before.Segments, after.Segments[:len(before.Segments)], "a dry run deletes nothing")

	out, err = s.cli("prune", "arc")
	require.NoError(t, err, out)
	assert.Contains(t, out, fmt.Sprintf("deleted binlog archive: %d segments", older), out)
	assert.Equal(t, []string{"a2"}, s.backupIDs("arc"))
	after, err = st.ReadIndex(s.ctx)
	require.NoError(t, err)
	require.NotEmpty(t, after.Segments)
	assert.Equal(t, m2.BinlogFile, after.Segments[0].File, "the archive now starts with a2's binlog file")
	assert.Equal(t, uint32(4), after.Segments[0].Start)
	data, err := st.ListData(s.ctx)
	require.NoError(t, err)
	for _, d := range data {
		assert.GreaterOrEqual(t, d.Seq, after.Segments[0].Seq, "data object %s of a pruned segment", d.Key)
	}
	ws := binlog.Windows([]*manifest.Manifest{m2}, after)
	require.Len(t, ws, 1)
	assert.Equal(t, "a2", ws[0].FromBackup)
	out, err = s.cli("ls", "arc")
	require.NoError(t, err, out)
	assert.True(t, strings.Contains(out, "a2"), out)

	// The kept window still replays to its end.
	dir := filepath.Join(t.TempDir(), "pitr")
	port, err := testdb.FreePort()
	require.NoError(t, err)
	var res workflows.RestoreResult
	_, err = s.run("restore/h1:"+dir, workflows.RestoreWorkflowName, workflows.RestoreRequest{
		Instance: "arc", TargetDir: dir, Start: true, Port: port, Target: binlog.Target{GTID: last},
	}, &res)
	require.NoError(t, err)
	t.Cleanup(func() { stopPID(res.Server.PID) })
	assert.Equal(t, a2.BackupID, res.BackupID)
	rdb, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	n, hi := countRows(t, rdb)
	assert.Equal(t, 150, n)
	assert.Equal(t, 150, hi)
	s.stopArchive(arch)
}
