package binlog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

func TestBuildCutsAtTransactionBoundariesAndReplays(t *testing.T) {
	src, db := newSource(t)
	writeRows(t, db, 1, 50)
	var gtid50 string
	require.NoError(t, db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid50))
	var file string
	var pos50 uint32
	require.NoError(t, db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos50, new(string), new(string)))
	writeRows(t, db, 51, 80)
	time.Sleep(2100 * time.Millisecond) // a quiet second-boundary for the time target
	cutTime := time.Now().Add(-time.Second)
	writeRows(t, db, 81, 120)

	st := &Store{B: memory.New(), Instance: "i1"}
	_, err := Run(context.Background(), st, db, source(src), Options{FlushInterval: 100 * time.Millisecond, RunFor: 1500 * time.Millisecond})
	require.NoError(t, err)
	ix, err := st.ReadIndex(context.Background())
	require.NoError(t, err)
	segs, err := ix.Covering("binlog.000001", 4)
	require.NoError(t, err)

	for _, c := range []struct {
		name   string
		target Target
		rows   int
	}{
		{"gtid", Target{GTID: gtid50}, 50},
		{"position", Target{File: file, Pos: pos50}, 50},
		{"position in a GTID event", Target{File: file, Pos: pos50 + 10}, 50},
		{"position in a transaction's body", Target{File: file, Pos: pos50 + 100}, 50},
		{"time", Target{Time: cutTime}, 80},
	} {
		t.Run(c.name, func(t *testing.T) {
			built, err := Build(context.Background(), st, segs, "binlog.000001", 4, c.target, t.TempDir())
			require.NoError(t, err)
			dst := testdb.ForTest(t, testdb.Options{})
			require.NoError(t, physical.ReplayWithClient(context.Background(), physical.ReplayParams{
				Files: built.Files, StartPos: built.StartPos,
				Endpoint: mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", dst.Port), User: "root", Password: dst.Password},
			}))
			ddb, err := dst.DB("")
			require.NoError(t, err)
			defer ddb.Close()
			var n, hi int
			require.NoError(t, ddb.QueryRow("SELECT COUNT(*), MAX(id) FROM a.t").Scan(&n, &hi))
			assert.Equal(t, c.rows, n)
			assert.Equal(t, c.rows, hi)
			t.Logf("%s: %d transactions, last %s, cut at %s:%d", c.name, built.Txns, built.LastGTID, built.CutFile, built.CutPos)
		})
	}
	_, err = Build(context.Background(), st, segs, "binlog.000001", 4, Target{GTID: "0-1-99999"}, t.TempDir())
	require.ErrorContains(t, err, "not in the archive")
}
