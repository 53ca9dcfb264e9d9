package replay

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

// archive writes rows on a fresh server, archives its binlog and rebuilds
// the files up to the last GTID.
func archive(t *testing.T, rows int) (*binlog.Built, string) {
	t.Helper()
	src := testdb.ForTest(t, testdb.Options{})
	db, err := src.DB("")
	require.NoError(t, err)
	defer db.Close()
	for _, q := range []string{"CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(100))"} {
		_, err := db.Exec(q)
		require.NoError(t, err)
	}
	for i := 1; i <= rows; i++ {
		_, err := db.Exec("INSERT INTO a.t VALUES (?, 'x')", i)
		require.NoError(t, err)
	}
	var gtid string
	require.NoError(t, db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid))
	st := &binlog.Store{B: memory.New(), Instance: "i"}
	_, err = binlog.Run(context.Background(), st, db, binlog.Source{Host: "127.0.0.1", Port: uint16(src.Port), User: "root",
		Password: src.Password, Flavor: "mariadb", ReplicaID: 4000000009}, binlog.Options{FlushInterval: 100 * time.Millisecond, RunFor: time.Second})
	require.NoError(t, err)
	ix, err := st.ReadIndex(context.Background())
	require.NoError(t, err)
	segs, err := ix.Covering("binlog.000001", 4)
	require.NoError(t, err)
	built, err := binlog.Build(context.Background(), st, segs, "binlog.000001", 4, binlog.Target{GTID: gtid}, t.TempDir())
	require.NoError(t, err)
	return built, gtid
}

func TestReplayMethods(t *testing.T) {
	for _, method := range []string{MethodReplica, MethodClient} {
		t.Run(method, func(t *testing.T) {
			built, gtid := archive(t, 300)
			dst := testdb.ForTest(t, testdb.Options{})
			require.NoError(t, dst.Stop())
			res, err := Run(context.Background(), Params{Method: method, Datadir: dst.Datadir, Files: built.Files,
				StartPos: built.StartPos, LastGTID: gtid, Threads: 4})
			if err != nil {
				b, _ := os.ReadFile(filepath.Join(dst.Datadir, "strata-server.err"))
				t.Logf("replay server log:\n%s", b)
			}
			require.NoError(t, err)
			assert.Equal(t, method, res.Method)
			srv, err := testdb.StartExisting(context.Background(), dst.Datadir, testdb.Options{Password: dst.Password})
			require.NoError(t, err)
			defer srv.Stop()
			db, err := srv.DB("")
			require.NoError(t, err)
			defer db.Close()
			var n int
			require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM a.t").Scan(&n))
			assert.Equal(t, 300, n)
			t.Logf("%s: %d transactions in %.2fs", method, built.Txns, res.Seconds)
		})
	}
}
