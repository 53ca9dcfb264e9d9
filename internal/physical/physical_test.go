package physical

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/mysqlx"
)

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
}

func TestReadCheckpointsAndInfo(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "xtrabackup_checkpoints", "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 44404\nlast_lsn = 48010\nrecover_binlog_info = 0\n")
	write(t, dir, "xtrabackup_info", `uuid = c992d93b-e7e3-11f1-9182-02fc00000001
tool_name = mariabackup
tool_version = 10.11.19-MariaDB
server_version = 10.11.19-MariaDB-0+deb12u1-log
lock_time = 1795510094
binlog_pos = filename 'binlog.000001', position '821', GTID of the last change '0-1-3,1-2-9'
`)
	cp, err := ReadCheckpoints(dir)
	require.NoError(t, err)
	assert.Equal(t, Checkpoints{BackupType: "full-backuped", FromLSN: 0, ToLSN: 44404, LastLSN: 48010}, *cp)
	in, err := ReadInfo(dir, flavor.MariaDB)
	require.NoError(t, err)
	assert.Equal(t, "mariabackup", in.ToolName)
	assert.Equal(t, "binlog.000001", in.BinlogFile)
	assert.Equal(t, uint64(821), in.BinlogPos)
	assert.Equal(t, "0-1-3,1-2-9", in.GTID)
}

func TestReadCheckpointsRejectsIncomplete(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "xtrabackup_checkpoints", "backup_type = full-backuped\n")
	_, err := ReadCheckpoints(dir)
	require.ErrorContains(t, err, "incomplete")
	write(t, dir, "xtrabackup_checkpoints", "backup_type = full-backuped\nto_lsn = x\n")
	_, err = ReadCheckpoints(dir)
	require.ErrorContains(t, err, "not a number")
	_, err = ReadCheckpoints(t.TempDir())
	require.Error(t, err)
}

func TestStageClockMariaDB(t *testing.T) {
	var c stageClock
	c.line("[00] 2026-11-24 08:48:14 Started BACKUP STAGE BLOCK_DDL")
	time.Sleep(20 * time.Millisecond)
	c.line("[00] 2026-11-24 08:48:15 Acquired locks for BACKUP STAGE BLOCK_COMMIT")
	time.Sleep(30 * time.Millisecond)
	c.line("[00] 2026-11-24 08:48:15 All tables unlocked")
	c.line("[00] 2026-11-24 08:48:15 All tables unlocked") // later repeats do not move the end
	commit, ddl := c.end.Sub(c.commitStart), c.end.Sub(c.ddlStart)
	assert.GreaterOrEqual(t, commit, 30*time.Millisecond)
	assert.GreaterOrEqual(t, ddl, 50*time.Millisecond)
	assert.Greater(t, ddl, commit)
}

func TestStageClockMySQL(t *testing.T) {
	var c stageClock
	c.line("Executing LOCK INSTANCE FOR BACKUP...")
	c.line("Executing FLUSH TABLES WITH READ LOCK...")
	c.line("Executing UNLOCK TABLES")
	assert.False(t, c.ddlStart.IsZero())
	assert.False(t, c.commitStart.IsZero())
	assert.False(t, c.end.IsZero())
}

func TestClientCnfQuotesAndForcesTCP(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.cnf")
	require.NoError(t, WriteClientCnf(p, mysqlx.Endpoint{Address: "localhost:3307", User: "bk", Password: `p"a\ss#1`}))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	s := string(b)
	assert.Contains(t, s, `password="p\"a\\ss#1"`)
	assert.Contains(t, s, `host="127.0.0.1"`)
	assert.Contains(t, s, "port=3307\nprotocol=TCP")
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestForFlavorMissingToolSaysWhatToInstall(t *testing.T) {
	_, err := ForFlavor(flavor.MySQL, Paths{Xtrabackup: "/nonexistent/xtrabackup"})
	require.ErrorIs(t, err, ErrToolMissing)
	assert.Contains(t, err.Error(), "tools.xtrabackup")
	t.Setenv("PATH", t.TempDir())
	_, err = ForFlavor(flavor.MySQL, Paths{})
	if err != nil { // xtrabackup may exist in /usr/bin on some machines
		assert.True(t, strings.Contains(err.Error(), "percona-xtrabackup-80"), err.Error())
	}
}

func TestTailBufferKeepsLastLines(t *testing.T) {
	var seen []string
	tb := newTail(3, func(l string) { seen = append(seen, l) })
	_, _ = tb.Write([]byte("a\nb\nc"))
	_, _ = tb.Write([]byte("d\ne\n"))
	assert.Equal(t, []string{"a", "b", "cd", "e"}, seen)
	assert.Equal(t, "b\ncd\ne", tb.String())
	assert.Equal(t, "cd\ne", tb.lastLines(2))
}

// The commit-lock hook runs once, when commits are blocked, before the
// next line is read.
func TestStageClockCommitsBlockedHook(t *testing.T) {
	calls := 0
	c := stageClock{onCommitsBlocked: func() { calls++ }}
	c.line("[00] Started BACKUP STAGE BLOCK_DDL")
	assert.Equal(t, 0, calls)
	c.line("[00] Acquired locks for BACKUP STAGE BLOCK_COMMIT")
	assert.Equal(t, 1, calls)
	c.line("[00] Acquired locks for BACKUP STAGE BLOCK_COMMIT")
	c.line("[00] All tables unlocked")
	assert.Equal(t, 1, calls)
	var none stageClock // no hook: nothing to call
	none.line("[00] Acquired locks for BACKUP STAGE BLOCK_COMMIT")
}

func TestBackupArgsPassLogCopyIntervalInMilliseconds(t *testing.T) {
	base := BackupParams{Datadir: "/var/lib/mysql"}
	has := func(args []string, prefix string) string {
		for _, a := range args {
			if strings.HasPrefix(a, prefix) {
				return a
			}
		}
		return ""
	}
	args := backupArgs("/s/client.cnf", "/s/target", "/s/lsn", base)
	assert.Equal(t, "--defaults-file=/s/client.cnf", args[0], "the option file must come first")
	assert.Empty(t, has(args, "--log-copy-interval"), "0 leaves the tool's default")
	assert.Empty(t, has(args, "--incremental-lsn"))

	p := base
	p.LogCopyInterval = 100 * time.Millisecond
	p.IncrementalLSN = 12345
	args = backupArgs("/s/client.cnf", "/s/target", "/s/lsn", p)
	assert.Equal(t, "--log-copy-interval=100", has(args, "--log-copy-interval"))
	assert.Equal(t, "--incremental-lsn=12345", has(args, "--incremental-lsn"))

	p.LogCopyInterval = 300 * time.Microsecond // below the tool's unit: never 0, which would mean "busy-poll"
	assert.Equal(t, "--log-copy-interval=1", has(backupArgs("c", "t", "l", p), "--log-copy-interval"))
}
