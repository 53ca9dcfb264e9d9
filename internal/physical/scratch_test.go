package physical

import (
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
