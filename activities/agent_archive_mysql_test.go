package activities

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

// The tools of a replay are those of the flavor the archive recorded:
// a MySQL archive gets tools.mysqld, tools.mysqlbinlog and tools.mysql
// even when tools.mariadbd is set, a MariaDB one (or one recorded before
// flavors were) never gets MySQL's.
func TestReplayToolsFollowTheRecordedFlavor(t *testing.T) {
	in := &config.Instance{Tools: config.Tools{Mariadbd: "/opt/mariadb/bin/mariadbd", Mysqld: "/opt/mysql/bin/mysqld",
		Mysqlbinlog: "/opt/mysql/bin/mysqlbinlog", Mysql: "/opt/mysql/bin/mysql"}}
	my := replayParams(in, flavor.MySQL)
	assert.Equal(t, flavor.MySQL, my.Flavor)
	assert.Equal(t, "/opt/mysql/bin/mysqld", my.Mariadbd)
	assert.Equal(t, "/opt/mysql/bin/mysqlbinlog", my.BinlogTool)
	assert.Equal(t, "/opt/mysql/bin/mysql", my.Client)

	segs := []binlog.Segment{{Seq: 1, File: "binlog.000001", Start: 4, End: 100}} // a record without a flavor
	f, err := binlog.RunFlavor(segs)
	require.NoError(t, err)
	maria := replayParams(in, f)
	assert.Equal(t, flavor.MariaDB, maria.Flavor)
	assert.Equal(t, "/opt/mariadb/bin/mariadbd", maria.Mariadbd)
	assert.Empty(t, maria.BinlogTool, "mariadb-binlog is looked up, never tools.mysqlbinlog")
	assert.Empty(t, maria.Client)

	segs = append(segs, binlog.Segment{Seq: 2, File: "binlog.000001", Start: 100, End: 200, Flavor: flavor.MySQL})
	_, err = binlog.RunFlavor(segs)
	assert.Error(t, err, "segments of two flavors")
}

// mysqlSegs is an archive index of a MySQL server: binlog.000001 from 4 to
// 1000 holding transactions 1-10 of uuid.
func mysqlIndex(uuid string) *binlog.Index {
	return &binlog.Index{Segments: []binlog.Segment{
		{Seq: 1, File: "binlog.000001", Start: 4, End: 500, LastTime: t0.Add(time.Hour), FirstGTID: uuid + ":1", LastGTID: uuid + ":5",
			Flavor: flavor.MySQL, Executed: uuid + ":1-5"},
		{Seq: 2, File: "binlog.000001", Start: 500, End: 1000, LastTime: t0.Add(2 * time.Hour), FirstGTID: uuid + ":6", LastGTID: uuid + ":10",
			Flavor: flavor.MySQL, Executed: uuid + ":1-10"},
	}}
}

// PITR planning on a MySQL archive takes uuid:N targets, decided by the
// recorded flavors: the archive's and the manifest's.
func TestPlanPITRMySQL(t *testing.T) {
	const uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	ix := mysqlIndex(uuid)
	b := bk("f1", manifest.TypeFull, "", 0, 100, 0)
	b.ServerFlavor, b.BinlogFile, b.BinlogPos, b.GTIDSet, b.ConsistentAt = "mysql", "binlog.000001", 300, uuid+":1-3", t0
	req := PITRRequest{Instance: "db1", Target: binlog.Target{GTID: uuid + ":7"}}
	plan, err := planPITR(req, []*manifest.Manifest{b}, ix, nil)
	require.NoError(t, err)
	assert.Equal(t, "f1", plan.BackupID)
	assert.Equal(t, uint32(300), plan.StartPos)

	for name, tc := range map[string]struct {
		gtid, errType string
	}{
		"beyond the archive":  {uuid + ":11", ErrOutsideWindow},
		"in the backup":       {uuid + ":2", ErrOutsideWindow},
		"a MariaDB GTID":      {"0-1-7", ErrInvalidRequest},
		"another source uuid": {"4e11fa47-71ca-11e1-9e33-c80aa9429562:7", ErrOutsideWindow},
	} {
		_, err := planPITR(PITRRequest{Instance: "db1", Target: binlog.Target{GTID: tc.gtid}}, []*manifest.Manifest{b}, ix, nil)
		require.Error(t, err, name)
		assert.Equal(t, tc.errType, appErrType(err), "%s: %v", name, err)
	}

	// A backup recorded as MariaDB's is no base for a MySQL archive.
	b.ServerFlavor = "mariadb"
	_, err = planPITR(req, []*manifest.Manifest{b}, ix, nil)
	require.Error(t, err)
	_, err = planPITR(PITRRequest{Instance: "db1", BackupID: "f1", Target: binlog.Target{Time: t0.Add(time.Hour)}}, []*manifest.Manifest{b}, ix, nil)
	require.Error(t, err)
	assert.Equal(t, ErrInvalidRequest, appErrType(err))
	assert.Contains(t, err.Error(), "mariadb server")
}

// The ReplayBinlogs activity replays a MySQL archive onto a clone of the
// server with MySQL's applier and tools, though tools.mariadbd names
// MariaDB's server, and lands on the GTID target.
func TestReplayBinlogsMySQL(t *testing.T) {
	testdb.RequireMySQL(t)
	src := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL})
	db, err := src.DB("")
	require.NoError(t, err)
	defer db.Close()
	var uuid string
	require.NoError(t, db.QueryRow("SELECT @@server_uuid").Scan(&uuid))
	clone := filepath.Join(t.TempDir(), "clone")
	for _, q := range []string{"CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY, v INT)", "INSERT INTO a.t VALUES (1, 1)",
		"INSTALL PLUGIN clone SONAME 'mysql_clone.so'", "CLONE LOCAL DATA DIRECTORY = '" + clone + "'", "FLUSH BINARY LOGS"} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	var file, doDB, ignoreDB, executed string
	var pos uint32
	require.NoError(t, db.QueryRow("SHOW BINARY LOG STATUS").Scan(&file, &pos, &doDB, &ignoreDB, &executed))
	var target string
	var want sql.NullString
	for i := 1; i <= 20; i++ {
		_, err := db.Exec("INSERT INTO a.t VALUES (?, ?) ON DUPLICATE KEY UPDATE v = v + 1", 1+i%4, i)
		require.NoError(t, err)
		if i == 12 {
			require.NoError(t, db.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&executed))
			target = fmt.Sprintf("%s:%d", uuid, gtid.MustParse(flavor.MySQL, executed).Last(uuid))
			require.NoError(t, db.QueryRow("SELECT GROUP_CONCAT(id, '=', v ORDER BY id) FROM a.t").Scan(&want))
		}
	}
	mariadbd, err := testdb.Binary("mariadbd")
	require.NoError(t, err)
	tool := func(name string) string {
		p, err := testdb.MySQLBinary(name)
		require.NoError(t, err)
		return p
	}
	t.Setenv("STRATA_TEST_DB1_PASSWORD", src.Password)
	cfg, err := config.Parse(fmt.Appendf(nil, `
storage: {local: {root: r}}
instances: [{id: db1, host: h1, connect: {address: "127.0.0.1:%d", user: root, password_env: STRATA_TEST_DB1_PASSWORD}, datadir: /d,
  archive: {flush_interval: 100ms},
  tools: {mariadbd: %q, mysqld: %q, mysqlbinlog: %q, mysql: %q}}]`, src.Port, mariadbd, tool("mysqld"), tool("mysqlbinlog"), tool("mysql")))
	require.NoError(t, err)
	a := &Agent{Host: "h1", Config: cfg, Repo: repo.New(memory.New())}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)

	// The archive, through the activity.
	val, err := env.ExecuteActivity(a.ArchiveBinlogs, ArchiveParams{Instance: "db1", RunFor: 1500 * time.Millisecond})
	require.NoError(t, err)
	var status binlog.Status
	require.NoError(t, val.Get(&status))
	ix, err := a.binlogStore("db1").ReadIndex(context.Background())
	require.NoError(t, err)
	require.NotEmpty(t, ix.Segments)
	assert.Equal(t, flavor.MySQL, ix.Last().Flavor, "the run recorded the flavor it detected")

	dir := filepath.Join(t.TempDir(), "data")
	out, err := exec.Command("cp", "-a", clone, dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	val, err = env.ExecuteActivity(a.ReplayBinlogs, ReplayParams{Instance: "db1", StartFile: file, StartPos: 4,
		Target: binlog.Target{GTID: target}, TargetDir: dir})
	require.NoError(t, err)
	var res ReplayResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, "replica", res.Method)
	assert.Equal(t, target, res.LastGTID)

	srv, err := testdb.StartExisting(context.Background(), dir, testdb.Options{Flavor: flavor.MySQL, Password: src.Password})
	require.NoError(t, err)
	defer srv.Stop()
	rdb, err := srv.DB("")
	require.NoError(t, err)
	defer rdb.Close()
	var got sql.NullString
	require.NoError(t, rdb.QueryRow("SELECT GROUP_CONCAT(id, '=', v ORDER BY id) FROM a.t").Scan(&got))
	assert.Equal(t, want.String, got.String, "the table as it was right after %s", target)
	require.NoError(t, rdb.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&executed))
	n, _ := strconv.ParseInt(target[len(uuid)+1:], 10, 64)
	assert.Equal(t, n, gtid.MustParse(flavor.MySQL, executed).Last(uuid))

	// A MariaDB GTID against this archive is refused before anything
	// is applied.
	_, err = env.ExecuteActivity(a.ReplayBinlogs, ReplayParams{Instance: "db1", StartFile: file, StartPos: 4,
		Target: binlog.Target{GTID: "0-1-12"}, TargetDir: filepath.Join(t.TempDir(), "none")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the archived server is mysql")
}
