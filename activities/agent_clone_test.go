package activities

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

// A MySQL instance with backup.method clone is backed up by the Backup
// activity (manifest: tool clone, flavor mysql, the consistent point),
// restored by RestoreBackup with no prepare step, and started by
// StartServer with mysqld because the manifest says MySQL. An incremental
// of a clone instance is refused.
func TestCloneBackupRestoreAndStartThroughTheActivities(t *testing.T) {
	testdb.RequireMySQL(t)
	srv := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL})
	db, err := srv.DB("")
	require.NoError(t, err)
	defer db.Close()
	for _, q := range []string{"CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three')"} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	var executed string
	require.NoError(t, db.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&executed))
	mysqld, err := testdb.MySQLBinary("mysqld")
	require.NoError(t, err)
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte(srv.Password), 0o600))
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
storage: {local: {root: r}}
instances:
  - id: my1
    host: h1
    connect: {socket: %q, user: root, password_file: %q}
    datadir: %q
    tools: {mysqld: %q}
    backup: {method: clone}
`, srv.Socket, pwFile, srv.Datadir, mysqld)))
	require.NoError(t, err)
	a := &Agent{Host: "h1", Config: cfg, Repo: repo.New(memory.New())}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	env.SetTestTimeout(5 * time.Minute)

	v, err := env.ExecuteActivity(a.Backup, BackupParams{Instance: "my1", BackupID: "c1", Type: manifest.TypeFull})
	require.NoError(t, err)
	var sum BackupSummary
	require.NoError(t, v.Get(&sum))
	m, err := a.Repo.ReadManifest(context.Background(), "my1", "c1")
	require.NoError(t, err)
	assert.Equal(t, physical.ToolClone, m.Tool)
	assert.Equal(t, "mysql", m.ServerFlavor)
	assert.Equal(t, m.ServerVersion, m.ToolVersion, "a clone's tool is the server")
	assert.Equal(t, flavor.MySQL, sum.ServerFlavor)
	assert.Equal(t, executed, m.GTIDSet, "an idle server: the clone holds everything executed")
	assert.NotEmpty(t, m.BinlogFile)
	assert.Greater(t, m.BinlogPos, uint64(4))
	assert.NoDirExists(t, physical.CloneDir(filepath.Dir(srv.Datadir), "c1"))

	// Incrementals are refused for a clone instance, saying why.
	parent := *m
	parent.BackupID, parent.ToLSN = "p1", 100
	parent.WorkflowID, parent.RunID = "", ""
	require.NoError(t, a.Repo.WriteManifest(context.Background(), &parent))
	_, err = env.ExecuteActivity(a.Backup, BackupParams{Instance: "my1", BackupID: "i1", Type: manifest.TypeIncremental, ParentID: "p1", FromLSN: 100})
	require.Error(t, err)
	assert.Equal(t, ErrInvalidRequest, appErrType(err))
	assert.Contains(t, err.Error(), "clone backups are full only; chains for clone are full + binlog archive")

	target := filepath.Join(t.TempDir(), "restored") // missing: the restore creates it
	_, err = env.ExecuteActivity(a.RestoreBackup, RestoreParams{Instance: "my1", BackupID: "c1", Chain: []string{"c1"}, TargetDir: target})
	require.NoError(t, err)
	v, err = env.ExecuteActivity(a.StartServer, StartServerParams{Instance: "my1", TargetDir: target, PickPort: true, Flavor: sum.ServerFlavor})
	require.NoError(t, err)
	var st StartServerResult
	require.NoError(t, v.Get(&st))
	defer server.Stop(context.Background(), &server.Started{PID: st.PID})
	assert.Contains(t, st.ServerVersion, "9.", "the restored MySQL datadir runs under mysqld")

	rs := &testdb.Server{Port: st.Port, User: "root", Password: srv.Password}
	rdb, err := rs.DB("")
	require.NoError(t, err)
	defer rdb.Close()
	var n int
	var restored string
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*) FROM app.t").Scan(&n))
	require.NoError(t, rdb.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&restored))
	assert.Equal(t, 3, n)
	assert.Equal(t, executed, restored)
}
