package binlog

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

// newMySQLSource starts a MySQL server with table a.t.
func newMySQLSource(t *testing.T) (*testdb.Server, *sql.DB, Source) {
	t.Helper()
	testdb.RequireMySQL(t)
	srv := testdb.ForTest(t, testdb.Options{Flavor: flavor.MySQL})
	db, err := srv.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{"CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(200))"} {
		_, err := db.Exec(q)
		require.NoError(t, err)
	}
	src := source(srv)
	src.Flavor = string(flavor.MySQL)
	return srv, db, src
}

func executedSet(t *testing.T, db *sql.DB) gtid.Set {
	t.Helper()
	var s string
	require.NoError(t, db.QueryRow("SELECT @@GLOBAL.gtid_executed").Scan(&s))
	return gtid.MustParse(flavor.MySQL, s)
}

// archivedGTIDs returns every GTID the archive's events hold, in order.
func archivedGTIDs(t *testing.T, st *Store) []string {
	t.Helper()
	ix, err := st.ReadIndex(context.Background())
	require.NoError(t, err)
	var out []string
	for i := range ix.Segments {
		raw, err := st.ReadSegment(context.Background(), &ix.Segments[i])
		require.NoError(t, err)
		for p := 0; p < len(raw); {
			size := int(binary.LittleEndian.Uint32(raw[p+9:]))
			h, err := parseHeader(raw[p : p+size])
			require.NoError(t, err)
			if g := gtidOf(h, raw[p:p+size]); g != "" {
				out = append(out, g)
			}
			p += size
		}
	}
	return out
}

// TestMySQLArchiveHoldsEveryGTIDOnce archives a MySQL server under
// writes, across restarts of the archiver, a rotation and compressed
// transactions: the archive is the server's binlog byte for byte, holds
// each GTID of gtid_executed exactly once, and its last segment records
// the server's executed set.
func TestMySQLArchiveHoldsEveryGTIDOnce(t *testing.T) {
	srv, db, src := newMySQLSource(t)
	st := &Store{B: memory.New(), Instance: "m1"}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	runOnce := func(runFor time.Duration) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Run(ctx, st, db, src, Options{FlushInterval: 200 * time.Millisecond, RunFor: runFor, NoCompact: true})
			if err != nil && ctx.Err() == nil {
				t.Errorf("archiver: %v", err)
			}
		}()
	}
	// A writer of its own connection, for compressed transactions.
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	write := func(from, to int) {
		for i := from; i <= to; i++ {
			_, err := conn.ExecContext(context.Background(), "INSERT INTO a.t (id, v) VALUES (?, REPEAT('z', 100))", i)
			require.NoError(t, err)
		}
	}
	// Points to map back to positions (PositionOf): after a transaction,
	// and right after a rotation.
	type point struct {
		file string
		pos  uint32
		set  gtid.Set
	}
	var points []point
	mark := func() {
		var f, doDB, ignoreDB, executed string
		var pos uint32
		require.NoError(t, db.QueryRow("SHOW BINARY LOG STATUS").Scan(&f, &pos, &doDB, &ignoreDB, &executed))
		points = append(points, point{f, pos, gtid.MustParse(flavor.MySQL, executed)})
	}
	runOnce(1500 * time.Millisecond)
	write(1, 150)
	mark()
	write(151, 200)
	wg.Wait()
	write(201, 300) // while no archiver runs
	_, err = db.Exec("FLUSH BINARY LOGS")
	require.NoError(t, err)
	mark()
	runOnce(0)
	_, err = conn.ExecContext(context.Background(), "SET SESSION binlog_transaction_compression = ON")
	require.NoError(t, err)
	write(301, 400)
	_, err = conn.ExecContext(context.Background(), "SET SESSION binlog_transaction_compression = OFF")
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE a.u (id INT PRIMARY KEY)") // a DDL transaction
	require.NoError(t, err)
	mark() // after compressed transactions
	write(401, 450)
	want := executedSet(t, db)
	require.Eventually(t, func() bool {
		ix, err := st.ReadTail(context.Background())
		return err == nil && ix.Last() != nil && ix.Last().Executed == want.String()
	}, 20*time.Second, 100*time.Millisecond, "the archive catches up with gtid_executed %s", want)
	cancel()
	wg.Wait()

	seen := map[string]int{}
	got := gtid.Set{}
	for _, g := range archivedGTIDs(t, st) {
		seen[g]++
		got, err = got.Add(g)
		require.NoError(t, err)
	}
	for g, n := range seen {
		assert.Equal(t, 1, n, "GTID %s archived once", g)
	}
	assert.True(t, got.Equal(want), "archived GTIDs %s == gtid_executed %s", got, want)

	ix, err := st.ReadIndex(context.Background())
	require.NoError(t, err)
	assert.Empty(t, ix.Gaps)
	assert.Len(t, ix.Runs(), 1)
	for _, p := range points {
		file, pos, err := st.PositionOf(context.Background(), ix, p.set)
		require.NoError(t, err)
		assert.Equal(t, p.file+":"+strconv.FormatUint(uint64(p.pos), 10), file+":"+strconv.FormatUint(uint64(pos), 10),
			"the position of GTID set %s", p.set)
	}
	for _, s := range ix.Segments {
		assert.Equal(t, flavor.MySQL, s.Flavor, "segment %d records the flavor", s.Seq)
	}
	var compressed bool
	for name, content := range rebuildAll(t, st) {
		fileData, err := os.ReadFile(filepath.Join(srv.Datadir, name))
		require.NoError(t, err)
		if len(fileData) > 21 {
			fileData[21] &^= 0x01 // LOG_EVENT_BINLOG_IN_USE_F, cleared in the dump
		}
		require.True(t, bytes.Equal(fileData, content), "%s: archive (%d bytes) == server file (%d bytes)", name, len(content), len(fileData))
		for p := 4; p < len(content); {
			size := int(binary.LittleEndian.Uint32(content[p+9:]))
			compressed = compressed || content[p+4] == evTxnPayload
			p += size
		}
	}
	assert.True(t, compressed, "the archive holds transaction payload events")
}

// TestMySQLPurgedBinlogIsAGap: binlogs purged while the archiver is down
// are a gap recorded by GTID set, and a PITR target in it or across it is
// refused.
func TestMySQLPurgedBinlogIsAGap(t *testing.T) {
	_, db, src := newMySQLSource(t)
	st := &Store{B: memory.New(), Instance: "m1"}
	ctx := context.Background()
	writeRows(t, db, 1, 20)
	before := executedSet(t, db)
	var file string
	var pos uint64
	var ignore1, ignore2, executed sql.NullString
	require.NoError(t, db.QueryRow("SHOW BINARY LOG STATUS").Scan(&file, &pos, &ignore1, &ignore2, &executed))
	base := &manifest.Manifest{BackupID: "b1", ServerFlavor: "mysql", BinlogFile: file, BinlogPos: pos,
		GTIDSet: before.String(), ConsistentAt: time.Now().UTC()}
	writeRows(t, db, 21, 40)
	_, err := Run(ctx, st, db, src, Options{FlushInterval: 100 * time.Millisecond, RunFor: 1500 * time.Millisecond, NoRollUp: true})
	require.NoError(t, err)
	archived := executedSet(t, db)

	// While no archiver runs: more writes, rotations, and a purge of
	// every file but the newest.
	writeRows(t, db, 41, 60)
	_, err = db.Exec("FLUSH BINARY LOGS")
	require.NoError(t, err)
	writeRows(t, db, 61, 80)
	purgedTo := executedSet(t, db)
	_, err = db.Exec("FLUSH BINARY LOGS")
	require.NoError(t, err)
	var newest string
	require.NoError(t, db.QueryRow("SHOW BINARY LOG STATUS").Scan(&newest, &pos, &ignore1, &ignore2, &executed))
	_, err = db.Exec("PURGE BINARY LOGS TO '" + newest + "'")
	require.NoError(t, err)
	writeRows(t, db, 81, 90)

	status, err := Run(ctx, st, db, src, Options{FlushInterval: 100 * time.Millisecond, RunFor: 1500 * time.Millisecond, NoRollUp: true})
	require.NoError(t, err)
	assert.Equal(t, 1, status.GapsFound)
	ix, err := st.ReadIndex(ctx)
	require.NoError(t, err)
	require.Len(t, ix.Gaps, 1)
	missing, err := purgedTo.Subtract(archived)
	require.NoError(t, err)
	assert.Equal(t, missing.String(), ix.Gaps[0].MissingGTIDs, "the gap records the set the archive misses")
	assert.Len(t, ix.Runs(), 2)

	uuid := newestUUID(t, db)
	target := func(n int64) Target { return Target{GTID: uuid + ":" + strconv.FormatInt(n, 10)} }
	ws := Windows([]*manifest.Manifest{base}, ix)
	require.Len(t, ws, 1, "one window: from the backup to the gap")
	inFirst, inGap, after := target(archived.Last(uuid)), target(purgedTo.Last(uuid)), target(executedSet(t, db).Last(uuid))
	assert.True(t, Before(base, inFirst))
	assert.True(t, ws[0].Reaches(inFirst), "a GTID archived before the gap is in the window")
	assert.False(t, ws[0].Reaches(inGap), "a purged GTID is in no window")
	assert.False(t, ws[0].Reaches(after), "a GTID after the gap is in no window from a backup before it")
	assert.False(t, Before(base, target(before.Last(uuid))), "a GTID the backup holds is not after it")

	// The replay refuses the purged GTID: it is not in the archive from
	// the backup's point.
	segs, err := ix.Covering(base.BinlogFile, uint32(base.BinlogPos))
	require.NoError(t, err)
	_, err = Build(ctx, st, segs, base.BinlogFile, uint32(base.BinlogPos), inGap, t.TempDir())
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrNotInArchive), "%v", err)
	b, err := Build(ctx, st, segs, base.BinlogFile, uint32(base.BinlogPos), inFirst, t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, inFirst.GTID, b.LastGTID)
	assert.Equal(t, 20, b.Txns)
	assert.NoError(t, inFirst.CheckFlavor(flavor.MySQL))
	assert.Error(t, inFirst.CheckFlavor(flavor.MariaDB), "a MySQL GTID against a MariaDB archive is refused")
}

func newestUUID(t *testing.T, db *sql.DB) string {
	t.Helper()
	var u string
	require.NoError(t, db.QueryRow("SELECT @@server_uuid").Scan(&u))
	return u
}
