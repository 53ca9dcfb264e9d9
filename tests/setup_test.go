package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/testdb"
)

// When the MySQL chroot cannot be built, `make deps` (and so `make test`)
// fails with a message that names the step and what to fix: here the
// Debian mirror debootstrap needs is unreachable.
func TestSetupNamesTheMySQLStepThatFails(t *testing.T) {
	port, err := testdb.FreePort() // nothing listens on it
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "mysql")
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "setup.sh"))
	cmd.Env = append(os.Environ(), "STRATA_MYSQL_DIR="+dir, "MYSQL_MIRROR=http://127.0.0.1:"+strconv.Itoa(port)+"/debian")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "setup succeeded without a mirror:\n%s", out)
	want := "setup: error: MySQL chroot: debootstrap of sid from http://127.0.0.1:" + strconv.Itoa(port) + "/debian failed"
	if os.Geteuid() != 0 {
		want = "setup: error: building the MySQL chroot needs root"
	}
	require.Contains(t, string(out), want)
	require.Contains(t, string(out), "MYSQL_MIRROR", "the message says what to set")
	t.Logf("setup failed in %.1fs: %s", time.Since(start).Seconds(), strings.TrimSpace(string(out)[strings.LastIndex(strings.TrimSpace(string(out)), "\n")+1:]))
	_, err = os.Stat(filepath.Join(dir, ".complete"))
	require.True(t, os.IsNotExist(err), "a failed build is not marked complete")
}
