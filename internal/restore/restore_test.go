package restore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/replay"
	"github.com/strata-backup/strata/internal/restore"
)

var (
	me    = restore.Owner{WorkflowID: "restore/h1:/x", RunID: "run-1"}
	other = restore.Owner{WorkflowID: "restore/h1:/x", RunID: "run-0"}
)

// fake is a chain restore without backup tools: each member is a file the
// fetch writes; prepare appends the member's index to base/applied; the
// move-back renames base into the target. fail makes one step fail once.
type fake struct {
	t       *testing.T
	chain   []string
	fail    string // "fetch 1", "prepare 0", "move", ...
	fetched []int
	staged  []string
	modes   []os.FileMode
}

var errInjected = errors.New("injected failure")

func (f *fake) once(step string) error {
	if f.fail == step {
		f.fail = ""
		return errInjected
	}
	return nil
}

func (f *fake) steps() restore.Steps {
	return restore.Steps{
		Staged: func(cache string) error {
			f.staged = append(f.staged, cache)
			fi, err := os.Stat(filepath.Dir(cache))
			require.NoError(f.t, err)
			f.modes = append(f.modes, fi.Mode().Perm())
			return os.MkdirAll(cache, 0o700)
		},
		Fetch: func(_ context.Context, i int, dir string) error {
			f.fetched = append(f.fetched, i)
			if err := os.WriteFile(filepath.Join(dir, "member"), []byte(f.chain[i]), 0o600); err != nil {
				return err
			}
			return f.once(fmt.Sprintf("fetch %d", i))
		},
		Prepare: func(_ context.Context, i int, base, inc string) error {
			if (i == 0) != (inc == "") {
				return fmt.Errorf("member %d prepared with inc %q", i, inc)
			}
			fh, err := os.OpenFile(filepath.Join(base, "applied"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			defer fh.Close()
			if _, err := fmt.Fprintf(fh, "%d ", i); err != nil {
				return err
			}
			return f.once(fmt.Sprintf("prepare %d", i))
		},
		MoveBack: func(_ context.Context, base, target string) error {
			if err := os.MkdirAll(target, 0o750); err != nil {
				return err
			}
			b, err := os.ReadFile(filepath.Join(base, "applied"))
			if err != nil {
				return err
			}
			// A partial move, then the failure.
			if err := os.WriteFile(filepath.Join(target, "applied"), b, 0o600); err != nil {
				return err
			}
			if err := f.once("move"); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(target, "complete"), nil, 0o600)
		},
	}
}

func job(target string, chain ...string) restore.Job {
	return restore.Job{Target: target, Owner: me, BackupID: chain[len(chain)-1], Chain: chain}
}

func restored(t *testing.T, target string) string {
	t.Helper()
	require.FileExists(t, filepath.Join(target, "complete"))
	b, err := os.ReadFile(filepath.Join(target, "applied"))
	require.NoError(t, err)
	return string(b)
}

func TestRunFresh(t *testing.T) {
	target := filepath.Join(t.TempDir(), "data")
	f := &fake{t: t, chain: []string{"f1", "i1", "i2"}}
	res, err := restore.Run(context.Background(), job(target+"/", f.chain...), f.steps())
	require.NoError(t, err)
	assert.Equal(t, &restore.Result{}, res)
	assert.Equal(t, "0 1 2 ", restored(t, target))
	assert.Equal(t, []int{0, 1, 2}, f.fetched)
	assert.Equal(t, []os.FileMode{0o700}, f.modes, "the staging dir holds decrypted data: 0700")
	assert.NoDirExists(t, restore.StagingDir(target), "the staging dir is removed")
}

// A failure at each step, then a retry of the same run: the retry resumes
// after the last completed step and the result is applied exactly once.
func TestResumeAfterEachPhase(t *testing.T) {
	for _, tc := range []struct {
		fail       string
		refetch    []int // fetched by the retry
		resumed    int
		phaseAfter string
	}{
		{"fetch 0", []int{0, 1, 2}, 0, restore.PhaseFetching},
		{"prepare 0", []int{0, 1, 2}, 0, restore.PhasePreparing},
		{"fetch 1", []int{1, 2}, 1, restore.PhaseFetching},
		{"prepare 1", []int{0, 1, 2}, 0, restore.PhasePreparing}, // base/ may be half-applied: from the full
		{"fetch 2", []int{2}, 2, restore.PhaseFetching},
		{"prepare 2", []int{0, 1, 2}, 0, restore.PhasePreparing},
		{"move", []int{0, 1, 2}, 0, restore.PhaseMoving},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "data")
			f := &fake{t: t, chain: []string{"f1", "i1", "i2"}, fail: tc.fail}
			_, err := restore.Run(context.Background(), job(target, f.chain...), f.steps())
			require.ErrorIs(t, err, errInjected)
			st, found := restore.ReadState(restore.StagingDir(target))
			require.True(t, found)
			assert.Equal(t, tc.phaseAfter, st.Phase)
			assert.Equal(t, me, st.Owner, "the state names the workflow run")

			f.fetched = nil
			res, err := restore.Run(context.Background(), job(target, f.chain...), f.steps())
			require.NoError(t, err)
			assert.Equal(t, tc.resumed, res.Resumed)
			assert.Equal(t, tc.refetch, f.fetched)
			assert.Equal(t, "0 1 2 ", restored(t, target), "each member applied once")
			assert.NoDirExists(t, restore.StagingDir(target))
			// Every attempt found the cache in the same place.
			assert.Equal(t, f.staged[0], f.staged[len(f.staged)-1])
		})
	}
}

// A retry after the move-back finished (its report was lost) does nothing.
func TestRetryAfterDone(t *testing.T) {
	target := filepath.Join(t.TempDir(), "data")
	staging := restore.StagingDir(target)
	require.NoError(t, os.MkdirAll(target, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(target, "ibdata1"), nil, 0o600))
	writeState(t, staging, restore.State{Owner: me, BackupID: "f1", Chain: []string{"f1"}, Phase: restore.PhaseDone, Applied: 1})
	f := &fake{t: t, chain: []string{"f1"}}
	res, err := restore.Run(context.Background(), job(target, "f1"), f.steps())
	require.NoError(t, err)
	assert.True(t, res.AlreadyDone)
	assert.Empty(t, f.fetched)
	assert.FileExists(t, filepath.Join(target, "ibdata1"))
	assert.NoDirExists(t, staging)
}

func writeState(t *testing.T, staging string, st restore.State) {
	t.Helper()
	require.NoError(t, os.MkdirAll(staging, 0o700))
	b, err := json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(staging, "state.json"), b, 0o600))
}

// A state of the same run for another chain is not resumed: the restore
// starts from the full.
func TestMismatchedStateStartsOver(t *testing.T) {
	target := filepath.Join(t.TempDir(), "data")
	staging := restore.StagingDir(target)
	writeState(t, staging, restore.State{Owner: me, BackupID: "i9", Chain: []string{"f0", "i9"}, Phase: restore.PhasePrepared, Applied: 1})
	require.NoError(t, os.MkdirAll(filepath.Join(staging, "base"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(staging, "base", "applied"), []byte("stale "), 0o600))
	f := &fake{t: t, chain: []string{"f1", "i1"}}
	res, err := restore.Run(context.Background(), job(target, f.chain...), f.steps())
	require.NoError(t, err)
	assert.Zero(t, res.Resumed)
	assert.Equal(t, []int{0, 1}, f.fetched)
	assert.Equal(t, "0 1 ", restored(t, target))
}

// The defect: a leftover state.json in phase "moving" cleared the target
// before any check. A staging dir of another run is never used or cleared,
// and nor is the target.
func TestStagingOfAnotherRunRefused(t *testing.T) {
	for _, st := range []restore.State{
		{Owner: other, BackupID: "f1", Chain: []string{"f1"}, Phase: restore.PhaseMoving, Applied: 1},
		{BackupID: "f1", Chain: []string{"f1"}, Phase: restore.PhaseMoving, Applied: 1}, // an older Strata: no owner
	} {
		target := filepath.Join(t.TempDir(), "data")
		staging := restore.StagingDir(target)
		writeState(t, staging, st)
		require.NoError(t, os.MkdirAll(target, 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(target, "precious"), []byte("user data"), 0o600))
		f := &fake{t: t, chain: []string{"f1"}}
		_, err := restore.Run(context.Background(), job(target, "f1"), f.steps())
		require.ErrorIs(t, err, restore.ErrTargetInUse)
		assert.Contains(t, err.Error(), staging)
		assert.FileExists(t, filepath.Join(target, "precious"), "the target was not cleared")
		assert.FileExists(t, filepath.Join(staging, "state.json"), "the other run's staging was not cleared")
		assert.Empty(t, f.fetched)
		require.NoError(t, restore.Discard(target, me))
		assert.DirExists(t, staging, "Discard leaves another run's staging alone")
	}
}

func TestTargetNotEmpty(t *testing.T) {
	target := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(target, "ibdata1"), nil, 0o600))
	_, err := restore.Run(context.Background(), job(target, "f1"), (&fake{t: t, chain: []string{"f1"}}).steps())
	require.ErrorIs(t, err, restore.ErrTargetNotEmpty)
	assert.FileExists(t, filepath.Join(target, "ibdata1"))
}

// The defect: a target that is a file gave a retryable "read target dir"
// error.
func TestTargetRegularFile(t *testing.T) {
	target := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.WriteFile(target, []byte("x"), 0o600))
	_, err := restore.Run(context.Background(), job(target, "f1"), (&fake{t: t, chain: []string{"f1"}}).steps())
	require.ErrorIs(t, err, restore.ErrTargetNotDir)
	assert.Contains(t, err.Error(), "regular file")
	b, _ := os.ReadFile(target)
	assert.Equal(t, "x", string(b))
}

func marker(t *testing.T, dir string, mk any) {
	t.Helper()
	var b []byte
	switch v := mk.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		b, err = json.Marshal(v)
		require.NoError(t, err)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, replay.Marker), b, 0o600))
}

// The defect: any non-empty directory holding strata-replay.started was
// emptied. Only the replay of this run is cleared.
func TestReplayMarker(t *testing.T) {
	for name, mk := range map[string]any{
		"other run":     replay.MarkerInfo{Method: "replica", WorkflowID: other.WorkflowID, RunID: other.RunID},
		"other id":      replay.MarkerInfo{Method: "replica", WorkflowID: "restore/h2:/y", RunID: me.RunID},
		"older strata":  "replica\n",
		"empty owner":   replay.MarkerInfo{Method: "client"},
		"planted empty": "",
	} {
		t.Run(name, func(t *testing.T) {
			target := t.TempDir()
			marker(t, target, mk)
			require.NoError(t, os.WriteFile(filepath.Join(target, "precious"), nil, 0o600))
			_, err := restore.Run(context.Background(), job(target, "f1"), (&fake{t: t, chain: []string{"f1"}}).steps())
			require.ErrorIs(t, err, restore.ErrTargetNotEmpty)
			assert.FileExists(t, filepath.Join(target, "precious"))
		})
	}
	t.Run("this run", func(t *testing.T) {
		target := t.TempDir()
		marker(t, target, replay.MarkerInfo{Method: "replica", WorkflowID: me.WorkflowID, RunID: me.RunID})
		require.NoError(t, os.WriteFile(filepath.Join(target, "half-replayed"), nil, 0o600))
		f := &fake{t: t, chain: []string{"f1"}}
		_, err := restore.Run(context.Background(), job(target, "f1"), f.steps())
		require.NoError(t, err)
		assert.NoFileExists(t, filepath.Join(target, "half-replayed"))
		assert.NoFileExists(t, filepath.Join(target, replay.Marker))
		assert.Equal(t, "0 ", restored(t, target))
	})
}

// fakeServer starts a process whose command line names --datadir=dir, as a
// server's does, and writes the pid file Strata's servers write.
func fakeServer(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 600; :", "mariadbd", "--datadir="+dir)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.NoError(t, os.WriteFile(filepath.Join(dir, "strata-server.pid"), []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o600))
	return cmd
}

// The defect: a server with a Strata pid file was SIGKILLed. A server on
// the target is refused, always, even in this run's own replay datadir or
// half-moved target.
func TestRunningServerRefused(t *testing.T) {
	for _, setup := range []string{"replay of this run", "move-back of this run"} {
		t.Run(setup, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "data")
			require.NoError(t, os.MkdirAll(target, 0o750))
			if setup == "replay of this run" {
				marker(t, target, replay.MarkerInfo{Method: "replica", WorkflowID: me.WorkflowID, RunID: me.RunID})
			} else {
				writeState(t, restore.StagingDir(target), restore.State{Owner: me, BackupID: "f1", Chain: []string{"f1"}, Phase: restore.PhaseMoving, Applied: 1})
			}
			srv := fakeServer(t, target)
			_, err := restore.Run(context.Background(), job(target, "f1"), (&fake{t: t, chain: []string{"f1"}}).steps())
			require.ErrorIs(t, err, restore.ErrTargetInUse)
			assert.Contains(t, err.Error(), fmt.Sprint(srv.Process.Pid))
			require.NoError(t, srv.Process.Signal(syscall.Signal(0)), "the server was not killed")
			assert.FileExists(t, filepath.Join(target, "strata-server.pid"), "the target was not cleared")
		})
	}
	t.Run("no pid file", func(t *testing.T) {
		target := t.TempDir()
		srv := fakeServer(t, target)
		require.NoError(t, os.Remove(filepath.Join(target, "strata-server.pid")))
		err := restore.CheckTarget(target+"/", me)
		require.ErrorIs(t, err, restore.ErrTargetInUse)
		require.NoError(t, srv.Process.Signal(syscall.Signal(0)))
	})
}

func TestDiscard(t *testing.T) {
	target := filepath.Join(t.TempDir(), "data")
	f := &fake{t: t, chain: []string{"f1", "i1"}, fail: "prepare 1"}
	_, err := restore.Run(context.Background(), job(target, f.chain...), f.steps())
	require.ErrorIs(t, err, errInjected)
	staging := restore.StagingDir(target)
	require.DirExists(t, filepath.Join(staging, "base"))
	require.NoError(t, restore.Discard(target, me))
	assert.NoDirExists(t, staging, "the decrypted data is gone")
	require.NoError(t, restore.Discard(target, me), "nothing to discard is fine")
}

func TestChainSpaceOfEmptyChain(t *testing.T) {
	assert.Zero(t, restore.ChainSpace(nil))
}

func TestOwnerRequired(t *testing.T) {
	j := job(t.TempDir(), "f1")
	j.Owner.RunID = ""
	_, err := restore.Run(context.Background(), j, (&fake{t: t, chain: []string{"f1"}}).steps())
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "run id"))
}

// A kill between writing the first state.json.tmp and renaming it left a
// staging dir the same run's retry refused as another restore's. The
// retry of the run that wrote it starts over; another run's is refused.
func TestCrashWritingFirstState(t *testing.T) {
	for _, tc := range []struct {
		owner restore.Owner
		ok    bool
	}{{me, true}, {other, false}} {
		t.Run(tc.owner.RunID, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "data")
			staging := restore.StagingDir(target)
			require.NoError(t, os.MkdirAll(staging, 0o700))
			b, err := json.Marshal(restore.State{Owner: tc.owner, BackupID: "f1", Chain: []string{"f1"}})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(staging, "state.json.tmp"), b, 0o600))
			f := &fake{t: t, chain: []string{"f1"}}
			_, err = restore.Run(context.Background(), job(target, "f1"), f.steps())
			if !tc.ok {
				require.ErrorIs(t, err, restore.ErrTargetInUse)
				assert.FileExists(t, filepath.Join(staging, "state.json.tmp"))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "0 ", restored(t, target))
			assert.NoDirExists(t, staging)
		})
	}
}

// A kill after the staging dir was removed, before the attempt reported
// success (or a report lost while the Temporal server restarts): the
// retry of the same run found a non-empty target and failed with
// ErrTargetNotEmpty, so a finished restore was reported as failed. It now
// finds the target restored by this run and does nothing; another run is
// still refused.
func TestRetryAfterStagingRemoved(t *testing.T) {
	target := filepath.Join(t.TempDir(), "data")
	f := &fake{t: t, chain: []string{"f1", "i1"}}
	_, err := restore.Run(context.Background(), job(target, f.chain...), f.steps())
	require.NoError(t, err)
	require.NoDirExists(t, restore.StagingDir(target))

	f.fetched = nil
	res, err := restore.Run(context.Background(), job(target, f.chain...), f.steps())
	require.NoError(t, err)
	assert.True(t, res.AlreadyDone)
	assert.Empty(t, f.fetched)
	assert.Equal(t, "0 1 ", restored(t, target))

	// Another chain of the same run, or another run, is not done.
	_, err = restore.Run(context.Background(), job(target, "f1"), f.steps())
	require.ErrorIs(t, err, restore.ErrTargetNotEmpty)
	j := job(target, f.chain...)
	j.Owner = other
	_, err = restore.Run(context.Background(), j, f.steps())
	require.ErrorIs(t, err, restore.ErrTargetNotEmpty)
	assert.Equal(t, "0 1 ", restored(t, target))
}
