package binlog

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

func source(s *testdb.Server) Source {
	return Source{Host: "127.0.0.1", Port: uint16(s.Port), User: s.User, Password: s.Password, Flavor: "mariadb", ReplicaID: 4000000001}
}

// newSource starts a server with table a.t for the tests' rows; the
// connection closes with the test.
func newSource(t *testing.T) (*testdb.Server, *sql.DB) {
	t.Helper()
	srv := testdb.ForTest(t, testdb.Options{})
	db, err := srv.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{"CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(200))"} {
		_, err := db.Exec(q)
		require.NoError(t, err)
	}
	return srv, db
}

func writeRows(t *testing.T, db *sql.DB, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		_, err := db.Exec("INSERT INTO a.t (id, v) VALUES (?, REPEAT('z', 100))", i)
		require.NoError(t, err)
	}
}

// rebuildAll concatenates each file's segments after the magic.
func rebuildAll(t *testing.T, st *Store) map[string][]byte {
	t.Helper()
	ix, err := st.ReadIndex(context.Background())
	require.NoError(t, err)
	files := map[string][]byte{}
	for i := range ix.Segments {
		s := &ix.Segments[i]
		raw, err := st.ReadSegment(context.Background(), s)
		require.NoError(t, err)
		if _, ok := files[s.File]; !ok {
			require.Equal(t, uint32(4), s.Start, "first segment of %s starts at 4", s.File)
			files[s.File] = append([]byte(nil), Magic...)
		}
		require.Equal(t, uint32(len(files[s.File])), s.Start, "segment %d continues %s", s.Seq, s.File)
		files[s.File] = append(files[s.File], raw...)
	}
	return files
}

func TestArchiveReproducesBinlogsExactlyAcrossRestarts(t *testing.T) {
	srv, db := newSource(t)

	st := &Store{B: memory.New(), Instance: "i1"}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var statuses []Status
	var mu sync.Mutex
	runOnce := func(runFor time.Duration) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Run(ctx, st, db, source(srv), Options{FlushInterval: 200 * time.Millisecond, RunFor: runFor,
				Progress: func(s Status) { mu.Lock(); statuses = append(statuses, s); mu.Unlock() }})
			if err != nil && ctx.Err() == nil {
				t.Errorf("archiver: %v", err)
			}
		}()
	}
	// Three runs back to back with writes and a rotation in between: each
	// resumes where the archive ends.
	runOnce(1500 * time.Millisecond)
	writeRows(t, db, 1, 300)
	wg.Wait()
	writeRows(t, db, 301, 400) // written while no archiver runs
	_, err := db.Exec("FLUSH BINARY LOGS")
	require.NoError(t, err)
	runOnce(1500 * time.Millisecond)
	writeRows(t, db, 401, 600)
	wg.Wait()
	runOnce(0)
	writeRows(t, db, 601, 700)
	time.Sleep(700 * time.Millisecond)
	cancel()
	wg.Wait()

	files := rebuildAll(t, st)
	require.GreaterOrEqual(t, len(files), 2)
	for name, got := range files {
		want, err := os.ReadFile(filepath.Join(srv.Datadir, name))
		require.NoError(t, err)
		// The server marks the file it is writing as in use in its format
		// event (LOG_EVENT_BINLOG_IN_USE_F) and clears the flag on close; the
		// dump stream sends the flag cleared.
		if len(want) > 21 {
			want[21] &^= 0x01
		}
		require.True(t, bytes.Equal(want, got), "%s: archive (%d bytes) == server file (%d bytes)", name, len(got), len(want))
	}
	ix, err := st.ReadIndex(context.Background())
	require.NoError(t, err)
	assert.Empty(t, ix.Gaps)
	assert.Len(t, ix.Runs(), 1)
	last := ix.Last()
	var pos string
	require.NoError(t, db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos))
	assert.Equal(t, pos, last.LastGTID)
	mu.Lock()
	s := statuses[len(statuses)-1]
	mu.Unlock()
	t.Logf("%d segments; lag p50 %.1f ms p99 %.1f ms max %.1f ms", last.Seq, s.LagP50Ms, s.LagP99Ms, s.LagMaxMs)
}

// TestArchiverStatusCountsItsRequests: the Status of a run counts every
// storage request its Store made, roll-ups included, as a counter around
// the backend sees them: each segment two writes, each roll-up and pack
// one.
func TestArchiverStatusCountsItsRequests(t *testing.T) {
	srv, db := newSource(t)
	writeRows(t, db, 1, 100)
	_, err := db.Exec("FLUSH BINARY LOGS")
	require.NoError(t, err)
	writeRows(t, db, 101, 150)

	outer := counting.New(memory.New())
	st := &Store{B: outer, Instance: "i1"}
	var progress []Status
	final, err := Run(context.Background(), st, db, source(srv), Options{FlushInterval: 100 * time.Millisecond, RunFor: 3 * time.Second,
		Progress: func(s Status) { progress = append(progress, s) }})
	require.NoError(t, err)
	require.Same(t, outer, st.B, "the Store's backend is given back")

	c := outer.Counts()
	assert.Equal(t, c.Put, final.Writes)
	assert.Equal(t, c.ListPages, final.ListPages)
	assert.Equal(t, c.Get+c.Stat, final.Reads)
	assert.Equal(t, c.Delete, final.Deletes)
	rollups, err := outer.B.List(context.Background(), "i1/binlogs/rollup/")
	require.NoError(t, err)
	require.NotEmpty(t, rollups, "the first file is rolled up in the run")
	assert.Positive(t, final.Deletes, "the records rolled up are deleted")
	packs, err := outer.B.List(context.Background(), "i1/binlogs/pack/")
	require.NoError(t, err)
	assert.Equal(t, 2*final.Segments+len(rollups)+len(packs), final.Writes, "two per segment, one per roll-up and pack")
	// A run shorter than a minute: its writes so far, per minute, per hour.
	assert.InDelta(t, float64(final.Writes)*60, final.WritesPerHour, 1e-6)

	require.NotEmpty(t, progress)
	for i := 1; i < len(progress); i++ {
		assert.GreaterOrEqual(t, progress[i].Writes, progress[i-1].Writes)
	}
	last := progress[len(progress)-1]
	assert.LessOrEqual(t, last.Writes, final.Writes)
	assert.GreaterOrEqual(t, last.Writes, 2*last.Segments, "every segment written is counted when reported")
}
