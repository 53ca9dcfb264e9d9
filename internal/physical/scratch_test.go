package physical

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSweepScratchRemovesOnlyAbandonedDirs(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "strata-backup-mine")
	dead := filepath.Join(dir, "strata-backup-dead")
	other := filepath.Join(dir, "unrelated")
	for _, d := range []string{mine, dead, other} {
		require.NoError(t, os.Mkdir(d, 0o700))
	}
	require.NoError(t, markOwner(mine))
	// A process that has exited: its pid is free.
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	require.NoError(t, os.WriteFile(filepath.Join(dead, ownerFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dead, "client.cnf"), []byte("password=x"), 0o600))

	removed, err := SweepScratch(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{dead}, removed)
	assert.DirExists(t, mine)
	assert.DirExists(t, other)
}

// The clone directories of a dead owner are swept, with their owner
// files; those of a live owner, and directories of other names, are kept.
func TestSweepClonesRemovesOnlyAbandonedClones(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	mk := func(name, owner string) string {
		dir := filepath.Join(parent, name)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "db"), 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "db", "t.ibd"), []byte("data"), 0o600))
		if owner != "" {
			require.NoError(t, os.WriteFile(dir+cloneOwnerSuffix, []byte(owner), 0o600))
		}
		return dir
	}
	gone := mk("strata-clone-b1", strconv.Itoa(dead.Process.Pid))
	live := mk("strata-clone-b2", strconv.Itoa(os.Getpid()))
	other := mk("datadir", strconv.Itoa(dead.Process.Pid))

	removed, err := SweepClones(context.Background(), parent, parent)
	require.NoError(t, err)
	assert.Equal(t, []string{gone}, removed)
	assert.NoDirExists(t, gone)
	assert.NoFileExists(t, gone+cloneOwnerSuffix)
	assert.DirExists(t, live)
	assert.DirExists(t, other)
}
