package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
)

// TestArchiveRollUpSurvivesKill9 rotates the source's binlog under writes
// so that the agent (a separate process) rolls up the closed files' index,
// kills it with SIGKILL as soon as a roll-up appears (while it deletes the
// records it holds, when the kill lands in time), and restarts it, three
// times: the archive still concatenates to the server's binlogs byte for
// byte, each segment is counted once, and PITR to a transaction inside a
// rolled-up file lands on it exactly.
func TestArchiveRollUpSurvivesKill9(t *testing.T) {
	killDuringBackgroundWork(t, "rollup/")
}

// TestArchiveCompactionSurvivesKill9 does the same with the compaction
// that follows a roll-up: the agent is killed as soon as a pack appears
// (while it deletes the data objects the pack holds, when the kill lands
// in time). Besides byte identity and each segment once, PITR to a
// transaction inside a compacted file lands on it exactly, reading it from
// its pack, and the restarted agent finishes the compactions it was killed
// in.
func TestArchiveCompactionSurvivesKill9(t *testing.T) {
	killDuringBackgroundWork(t, "pack/")
}

// killDuringBackgroundWork kills the archiving agent three times, each as
// soon as a new object appears under db1/binlogs/<watch> after a rotate,
// then checks the archive against the server and PITR inside it.
func killDuringBackgroundWork(t *testing.T, watch string) {
	s := newStack(t)
	db := s.numbered()
	agent, arch, w, stopWriter := s.archivingUnderWrites(db)

	st := &binlog.Store{B: s.repo.Backend(), Instance: "db1"}
	interrupted := 0
	for round := 0; round < 3; round++ {
		before, err := s.repo.Backend().List(s.ctx, "db1/binlogs/"+watch)
		require.NoError(t, err)
		// A few segments in the current file, then rotate.
		start := w.count()
		require.Eventually(t, func() bool {
			ix, err := st.ReadTail(s.ctx)
			return err == nil && len(ix.Segments) >= 4 && w.count() > start+300
		}, time.Minute, 20*time.Millisecond, "archiving under writes")
		_, err = db.ExecContext(s.ctx, "FLUSH BINARY LOGS")
		require.NoError(t, err)
		// Kill as soon as the new object is there.
		require.Eventually(t, func() bool {
			objs, err := s.repo.Backend().List(s.ctx, "db1/binlogs/"+watch)
			return err == nil && len(objs) > len(before)
		}, time.Minute, time.Millisecond, "a new object under %s after the rotate", watch)
		require.NoError(t, agent.Process.Kill())
		_ = agent.Wait()
		// Was it killed mid-way: records left inside the newest roll-up,
		// or data objects left beside the newest pack?
		ix, err := st.ReadIndex(s.ctx)
		require.NoError(t, err)
		interrupted += leftInside(t, s, st, ix, watch)
		agent = s.startAgentProcess()
	}
	t.Logf("killed with work half done under %s: %d objects left to delete", watch, interrupted)
	time.Sleep(2 * time.Second)
	stopWriter()
	s.waitArchived("db1", gtidPos(t, db))

	files, ix := s.rebuildArchive("db1")
	assert.Empty(t, ix.Gaps)
	assert.Len(t, ix.Runs(), 1)
	require.GreaterOrEqual(t, len(ix.Rollups), 3, "the closed files are rolled up")
	for i := 1; i < len(ix.Segments); i++ {
		require.Equal(t, ix.Segments[i-1].Seq+1, ix.Segments[i].Seq, "each segment once, none missing")
	}
	s.requireSameAsServer(files)
	if watch == "pack/" {
		require.Eventually(t, func() bool {
			ix, err := st.ReadIndex(s.ctx)
			require.NoError(t, err)
			n := 0
			for _, rr := range ix.Rollups {
				n += leftInside(t, s, st, &binlog.Index{Rollups: []binlog.RollupRange{rr}}, "data/")
			}
			return n == 0
		}, time.Minute, 200*time.Millisecond, "the restarted agent deletes the data objects the packs hold")
	}

	// PITR to a transaction in the middle of a rolled-up (and compacted) file.
	row := map[string]int{}
	for i, g := range w.gtids {
		row[g] = i
	}
	ix, err := st.ReadIndex(s.ctx)
	require.NoError(t, err)
	var mid *binlog.Segment
	k := -1
	for _, rr := range ix.Rollups {
		for i := range ix.Segments {
			seg := &ix.Segments[i]
			if seg.Seq >= (rr.FirstSeq+rr.LastSeq)/2 && seg.Seq < rr.LastSeq && mid == nil {
				if r, ok := row[seg.LastGTID]; ok {
					mid, k = seg, r
				}
			}
		}
	}
	require.NotNil(t, mid, "a segment of writer's rows inside a roll-up")
	if watch == "pack/" {
		require.NotEmpty(t, mid.PackKey(), "segment %d is compacted", mid.Seq)
	}
	t.Logf("PITR to %s (row %d), segment %d (pack %q)", mid.LastGTID, k+1, mid.Seq, mid.PackKey())
	rdb, _, err := s.pitr(binlog.Target{GTID: mid.LastGTID}, "base")
	require.NoError(t, err)
	n, hi := countRows(t, rdb)
	assert.Equal(t, k+1, n, "rows up to and including the target transaction")
	assert.Equal(t, k+1, hi)
	st2 := s.stopArchive(arch)
	assert.Empty(t, st2.LastError)
}

// leftInside counts the objects a background job stopped before deleting:
// for "rollup/", individual records inside the newest roll-up of ix; for
// "pack/", data objects of the segments of the newest roll-up that its
// packs hold; for "data/", data objects inside the roll-ups of ix (after
// compaction, none should be).
func leftInside(t *testing.T, s *stack, st *binlog.Store, ix *binlog.Index, watch string) int {
	t.Helper()
	if len(ix.Rollups) == 0 {
		return 0
	}
	last := ix.Rollups[len(ix.Rollups)-1]
	inLast := func(seq uint64) bool { return seq >= last.FirstSeq && seq <= last.LastSeq }
	n := 0
	switch watch {
	case "rollup/":
		recs, err := s.repo.Backend().List(s.ctx, "db1/binlogs/index/")
		require.NoError(t, err)
		for seq := last.FirstSeq; seq <= last.LastSeq; seq++ {
			for _, r := range recs {
				if r.Key == st.IndexKey(seq) {
					n++
				}
			}
		}
	case "pack/", "data/":
		data, err := st.ListData(s.ctx)
		require.NoError(t, err)
		for _, d := range data {
			if inLast(d.Seq) && (watch == "data/" || packed(ix, d.Seq)) && strings.Contains(d.Key, "/data/") {
				n++
			}
		}
	}
	return n
}

// packed says whether a pack of ix holds segment seq.
func packed(ix *binlog.Index, seq uint64) bool {
	for _, p := range ix.Packs {
		if p.FirstSeq <= seq && seq <= p.LastSeq {
			return true
		}
	}
	return false
}
