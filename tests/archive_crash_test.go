package tests

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/flavor"
)

// rebuildArchive concatenates each file's archived segments after the magic.
func (s *stack) rebuildArchive(instance string) (map[string][]byte, *binlog.Index) {
	s.t.Helper()
	st := &binlog.Store{B: s.repo.Backend(), Instance: instance}
	ix, err := st.ReadIndex(s.ctx)
	require.NoError(s.t, err)
	files := map[string][]byte{}
	for i := range ix.Segments {
		seg := &ix.Segments[i]
		raw, err := st.ReadSegment(s.ctx, seg)
		require.NoError(s.t, err)
		if _, ok := files[seg.File]; !ok {
			files[seg.File] = append([]byte(nil), binlog.Magic...)
		}
		require.Equal(s.t, uint32(len(files[seg.File])), seg.Start, "segment %d continues %s without gap or overlap", seg.Seq, seg.File)
		files[seg.File] = append(files[seg.File], raw...)
	}
	return files, ix
}

// archivingUnderWrites turns the stack's agent into a separate process (so
// that a test can kill -9 it), takes backup "base", starts the archiver of
// db1 and a writer of numbered rows. stopWriter stops the writer and
// returns once it has (failing the test on a writer error).
func (s *stack) archivingUnderWrites(db *sql.DB) (agent *exec.Cmd, arch client.WorkflowRun, w *writer, stopWriter func()) {
	s.t.Helper()
	s.backup("base", "full")
	s.agent.Stop()
	s.agent = nil
	agent = s.startAgentProcess()
	arch = s.startArchive("db1", 30*time.Second)
	wctx, cancel := context.WithCancel(s.ctx)
	w = &writer{mysql: s.flavor == flavor.MySQL}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(wctx, db) }()
	return agent, arch, w, func() {
		cancel()
		wg.Wait()
		require.NoError(s.t, w.err)
	}
}

// requireSameAsServer checks that each rebuilt file equals the source
// server's binlog file byte for byte (but for the in-use flag of the file
// being written).
func (s *stack) requireSameAsServer(files map[string][]byte) {
	s.t.Helper()
	for name, got := range files {
		want, err := os.ReadFile(filepath.Join(s.src.Datadir, name))
		require.NoError(s.t, err)
		if len(want) > 21 {
			want[21] &^= 0x01 // the in-use flag of the file being written
		}
		assert.True(s.t, bytes.Equal(want, got), "%s: archive (%d bytes) equals the server's file (%d bytes)", name, len(got), len(want))
	}
}

func TestArchiveSurvivesKill9OfTheAgentWithoutGapOrDuplicate(t *testing.T) {
	forFlavors(t, testArchiveSurvivesKill9OfTheAgentWithoutGapOrDuplicate)
}

func testArchiveSurvivesKill9OfTheAgentWithoutGapOrDuplicate(t *testing.T, fl flavor.Name) {
	s := newStack(t, withFlavor(fl))
	db := s.numbered()
	agent, arch, w, stopWriter := s.archivingUnderWrites(db)

	st := &binlog.Store{B: s.repo.Backend(), Instance: "db1"}
	require.Eventually(t, func() bool {
		ix, err := st.ReadIndex(s.ctx)
		return err == nil && len(ix.Segments) >= 3 && w.count() > 200
	}, time.Minute, 50*time.Millisecond, "archiving under writes")
	require.NoError(t, agent.Process.Kill()) // SIGKILL: no flush, no goodbye
	_ = agent.Wait()
	killedAt := w.count()
	time.Sleep(time.Second)
	s.startAgentProcess()
	require.Eventually(t, func() bool { return w.count() > killedAt+500 }, time.Minute, 50*time.Millisecond)
	stopWriter()
	s.waitArchived("db1", gtidPos(t, db))
	t.Logf("writer committed %d rows; agent killed after %d", w.count(), killedAt)

	// No gap, no duplicate: the archive is the server's binlog, byte for byte.
	files, ix := s.rebuildArchive("db1")
	assert.Empty(t, ix.Gaps)
	assert.Len(t, ix.Runs(), 1)
	s.requireSameAsServer(files)

	// And replaying the whole archive onto the backup gives the source's rows.
	rdb, res, err := s.pitr(binlog.Target{GTID: gtidPos(t, db)}, "base")
	require.NoError(t, err)
	n, hi := countRows(t, rdb)
	assert.Equal(t, w.count(), n)
	assert.Equal(t, w.count(), hi)
	t.Logf("replayed %d transactions in %.2fs", res.Replay.Transactions, res.Replay.Seconds)
	st2 := s.stopArchive(arch)
	assert.Empty(t, st2.LastError)
}
