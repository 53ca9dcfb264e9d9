package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/server"
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

// The replay server runs with the buffer pool asked for, and with the
// host-derived one when none is: the result and the server's log say so.
func TestReplayBufferPool(t *testing.T) {
	built, gtid := archive(t, 50)
	for name, pool := range map[string]int64{"configured": 256 << 20, "host": 0} {
		t.Run(name, func(t *testing.T) {
			dst := testdb.ForTest(t, testdb.Options{})
			require.NoError(t, dst.Stop())
			res, err := Run(context.Background(), Params{Method: MethodReplica, Datadir: dst.Datadir, Files: built.Files,
				StartPos: built.StartPos, LastGTID: gtid, BufferPool: pool})
			require.NoError(t, err)
			want := pool
			if pool == 0 {
				want = HostBufferPool(dst.Datadir).Bytes
				assert.Contains(t, res.Pool.Rule, "MiB")
			} else {
				assert.Equal(t, "256MiB: configured", res.Pool.Rule)
			}
			assert.Equal(t, want, res.Pool.Bytes)
			log, err := os.ReadFile(filepath.Join(dst.Datadir, "strata-server.err"))
			require.NoError(t, err)
			assert.Contains(t, string(log), fmt.Sprintf("innodb_buffer_pool_size=%dm", want>>20), "the server's buffer pool")
			// A replay of 50 transactions may take less than a clock tick
			// (10 ms) of CPU: readUsage is checked on its own below.
			assert.GreaterOrEqual(t, res.Server.CPUSeconds, 0.0)
		})
	}
}

// readUsage reads a live process's CPU time from /proc; a process that is
// gone reads as zero.
func TestReadUsage(t *testing.T) {
	before := readUsage(os.Getpid())
	after := before
	// Spin until the kernel's next tick of this process's CPU (10 ms of
	// CPU), for at most 10 s.
	for deadline := time.Now().Add(10 * time.Second); after.CPUSeconds == before.CPUSeconds && time.Now().Before(deadline); {
		after = readUsage(os.Getpid())
	}
	assert.Greater(t, after.since(before).CPUSeconds, 0.0, "the process's CPU time is read and grows")
	assert.Equal(t, Usage{}, readUsage(0))
	assert.Equal(t, Usage{}, readUsage(1<<30), "no such process")
}

// A replay cut off after it changed the datadir (the agent's context ends)
// leaves the datadir marked: applying the binlogs again would apply some
// twice, so the next replay refuses, whatever the server's durability
// settings. The wait is for a GTID the files do not reach, so the cut
// comes after every transaction was applied.
func TestReplayCutOffLeavesTheMarker(t *testing.T) {
	built, gtid := archive(t, 50)
	dst := testdb.ForTest(t, testdb.Options{})
	require.NoError(t, dst.Stop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ticks int
	p := Params{Method: MethodReplica, Datadir: dst.Datadir, Files: built.Files, StartPos: built.StartPos, LastGTID: "0-1-999999",
		BufferPool: 128 << 20, WorkflowID: "w", RunID: "r", Tick: func() {
			if ticks++; ticks == 3 {
				cancel()
			}
		}}
	_, err := Run(ctx, p)
	require.Error(t, err)
	mk, ok := ReadMarker(dst.Datadir)
	require.True(t, ok, "the marker stays")
	assert.True(t, mk.Owns("w", "r"))
	assert.NoFileExists(t, filepath.Join(dst.Datadir, DoneMarker))
	_, running := server.Running(dst.Datadir)
	assert.False(t, running, "the replay server is stopped")
	_, err = Run(context.Background(), Params{Method: MethodReplica, Datadir: dst.Datadir, Files: built.Files,
		StartPos: built.StartPos, LastGTID: gtid, WorkflowID: "w", RunID: "r"})
	require.ErrorIs(t, err, ErrInterrupted)
}
