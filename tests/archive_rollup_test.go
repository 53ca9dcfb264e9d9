package tests

import (
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
	s := newStack(t)
	db := s.numbered()
	agent, arch, w, stopWriter := s.archivingUnderWrites(db)

	st := &binlog.Store{B: s.repo.Backend(), Instance: "db1"}
	interrupted := 0
	for round := 0; round < 3; round++ {
		before, err := s.repo.Backend().List(s.ctx, "db1/binlogs/rollup/")
		require.NoError(t, err)
		// A few segments in the current file, then rotate.
		start := w.count()
		require.Eventually(t, func() bool {
			ix, err := st.ReadTail(s.ctx)
			return err == nil && len(ix.Segments) >= 4 && w.count() > start+300
		}, time.Minute, 20*time.Millisecond, "archiving under writes")
		_, err = db.ExecContext(s.ctx, "FLUSH BINARY LOGS")
		require.NoError(t, err)
		// Kill as soon as the new roll-up is there.
		var rolled []string
		require.Eventually(t, func() bool {
			objs, err := s.repo.Backend().List(s.ctx, "db1/binlogs/rollup/")
			if err != nil || len(objs) <= len(before) {
				return false
			}
			for _, o := range objs {
				rolled = append(rolled, o.Key)
			}
			return true
		}, time.Minute, time.Millisecond, "a roll-up of the closed file")
		require.NoError(t, agent.Process.Kill())
		_ = agent.Wait()
		// Were records left inside the roll-up (killed mid-way)?
		ix, err := st.ReadIndex(s.ctx)
		require.NoError(t, err)
		recs, err := s.repo.Backend().List(s.ctx, "db1/binlogs/index/")
		require.NoError(t, err)
		last := ix.Rollups[len(ix.Rollups)-1]
		for _, r := range recs {
			for seq := last.FirstSeq; seq <= last.LastSeq; seq++ {
				if r.Key == st.IndexKey(seq) {
					interrupted++
					seq = last.LastSeq
				}
			}
		}
		agent = s.startAgentProcess()
	}
	t.Logf("roll-ups killed with records still inside them: %d records", interrupted)
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

	// PITR to a transaction in the middle of a rolled-up file.
	row := map[string]int{}
	for i, g := range w.gtids {
		row[g] = i
	}
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
	t.Logf("PITR to %s (row %d), segment %d", mid.LastGTID, k+1, mid.Seq)
	rdb, _, err := s.pitr(binlog.Target{GTID: mid.LastGTID}, "base")
	require.NoError(t, err)
	n, hi := countRows(t, rdb)
	assert.Equal(t, k+1, n, "rows up to and including the target transaction")
	assert.Equal(t, k+1, hi)
	st2 := s.stopArchive(arch)
	assert.Empty(t, st2.LastError)
}
