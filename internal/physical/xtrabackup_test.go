package physical

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
)

// The xtrabackup 8.0 and 8.4 files of testdata/ (see its README) parse to
// what their fields say.
func TestXtrabackupCheckpoints(t *testing.T) {
	for _, c := range []struct {
		dir  string
		want Checkpoints
	}{
		{"xtrabackup-8.0/full", Checkpoints{BackupType: BackupTypeFull, ToLSN: 33294866, LastLSN: 33294876, FlushedLSN: 33294866}},
		{"xtrabackup-8.0/incremental", Checkpoints{BackupType: BackupTypeIncremental, FromLSN: 33294866, ToLSN: 33871203,
			LastLSN: 33871213, FlushedLSN: 33871203}},
		{"xtrabackup-8.4/full", Checkpoints{BackupType: BackupTypeFull, ToLSN: 20985432, LastLSN: 20985442, FlushedLSN: 20985432}},
		{"xtrabackup-8.4/incremental", Checkpoints{BackupType: BackupTypeIncremental, FromLSN: 20985432, ToLSN: 21460991,
			LastLSN: 21461001, FlushedLSN: 21460991, RedoMemory: 1048576, RedoFrames: 2}},
		{"xtrabackup-8.4/prepared", Checkpoints{BackupType: BackupTypeFullPrepared, ToLSN: 21460991, LastLSN: 21461001, FlushedLSN: 21460991}},
	} {
		cp, err := ReadCheckpoints(filepath.Join("testdata", c.dir))
		require.NoError(t, err, c.dir)
		assert.Equal(t, c.want, *cp, c.dir)
	}
}

func TestXtrabackupInfo(t *testing.T) {
	for _, c := range []struct {
		dir                      string
		tool, server             string
		file                     string
		pos                      uint64
		gtid                     string
		fromLSN, toLSN           uint64
		incremental              bool
		start, end, uuid, format string
	}{
		{dir: "xtrabackup-8.0/full", tool: "8.0.35-31", server: "8.0.36", file: "binlog.000003", pos: 197,
			gtid: "5b1e2c2e-0a43-11ef-9d3a-0242ac110002:1-1042", toLSN: 33294866,
			start: "2024-05-04 10:12:03", end: "2024-05-04 10:12:41", uuid: "6f0e51a8-0a44-11ef-8a4b-0242ac110002", format: "xbstream"},
		{dir: "xtrabackup-8.0/incremental", tool: "8.0.35-31", server: "8.0.36", file: "binlog.000004", pos: 2311,
			gtid:    "5b1e2c2e-0a43-11ef-9d3a-0242ac110002:1-1187,9d2f7a10-0a43-11ef-b1c4-0242ac110003:1-12:15-20",
			fromLSN: 33294866, toLSN: 33871203, incremental: true,
			start: "2024-05-04 11:00:02", end: "2024-05-04 11:00:09", uuid: "0c7a63f4-0a45-11ef-8a4b-0242ac110002", format: "xbstream"},
		{dir: "xtrabackup-8.4/full", tool: "8.4.0-2", server: "8.4.3", file: "binlog.000002", pos: 1574,
			gtid: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-57", toLSN: 20985432,
			start: "2025-04-22 03:00:01", end: "2025-04-22 03:00:26", uuid: "1a9b0c3e-1f20-11f0-9e2d-0242ac120002", format: "xbstream"},
		{dir: "xtrabackup-8.4/incremental", tool: "8.4.0-2", server: "8.4.3", file: "binlog.000003", pos: 157,
			gtid:    "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-301,4f22ab58-82db-11e2-8f44-d91bb9530673:1-9",
			fromLSN: 20985432, toLSN: 21460991, incremental: true,
			start: "2025-04-22 05:00:01", end: "2025-04-22 05:00:05", uuid: "8c4e5d71-1f38-11f0-9e2d-0242ac120002", format: "xbstream"},
	} {
		in, err := ReadInfo(filepath.Join("testdata", c.dir), flavor.MySQL)
		require.NoError(t, err, c.dir)
		assert.Equal(t, "xtrabackup", in.ToolName, c.dir)
		assert.Equal(t, c.tool, in.ToolVersion, c.dir)
		assert.Equal(t, c.tool, in.IbbackupVersion, c.dir)
		assert.Equal(t, c.server, in.ServerVersion, c.dir)
		assert.Equal(t, c.file, in.BinlogFile, c.dir)
		assert.Equal(t, c.pos, in.BinlogPos, c.dir)
		assert.Equal(t, c.gtid, in.GTID, c.dir)
		assert.Equal(t, c.fromLSN, in.InnoDBFromLSN, c.dir)
		assert.Equal(t, c.toLSN, in.InnoDBToLSN, c.dir)
		assert.Equal(t, c.incremental, in.Incremental, c.dir)
		assert.Equal(t, c.start, in.StartTime, c.dir)
		assert.Equal(t, c.end, in.EndTime, c.dir)
		assert.Equal(t, c.uuid, in.UUID, c.dir)
		assert.Equal(t, c.format, in.Format, c.dir)
		assert.Empty(t, in.Name, c.dir)
		assert.False(t, in.Partial || in.Compressed || in.Encrypted, c.dir)
		assert.Contains(t, in.ToolCommand, "--stream=xbstream", c.dir)
		// The set is a MySQL set: every uuid and interval of it.
		set, err := gtid.Parse(flavor.MySQL, in.GTID)
		require.NoError(t, err)
		assert.True(t, set.Equal(gtid.MustParse(flavor.MySQL, c.gtid)), c.dir)
	}
}

// xtrabackup_binlog_info alone: a GTID set over two lines is one set.
func TestXtrabackupBinlogInfoMultiLine(t *testing.T) {
	bi, err := ReadBinlogInfo(filepath.Join("testdata", "xtrabackup-8.4", "incremental", "xtrabackup_binlog_info"), flavor.MySQL)
	require.NoError(t, err)
	assert.Equal(t, "binlog.000003", bi.File)
	assert.Equal(t, uint64(157), bi.Pos)
	assert.Equal(t, int64(301), bi.GTID.Last("3e11fa47-71ca-11e1-9e33-c80aa9429562"))
	assert.Equal(t, int64(9), bi.GTID.Last("4f22ab58-82db-11e2-8f44-d91bb9530673"))
	ok, err := bi.GTID.ContainsGTID("4f22ab58-82db-11e2-8f44-d91bb9530673:9")
	require.NoError(t, err)
	assert.True(t, ok)

	dir := t.TempDir()
	p := filepath.Join(dir, "xtrabackup_binlog_info")
	write(t, dir, "xtrabackup_binlog_info", "binlog.000001\t4\n") // GTIDs off
	bi, err = ReadBinlogInfo(p, flavor.MySQL)
	require.NoError(t, err)
	assert.True(t, bi.GTID.IsEmpty())
	for body, msg := range map[string]string{
		"binlog.000001 157\n":                             "is not \"file<TAB>position",
		"binlog.000001\tx\n":                              "is not a binlog offset",
		"binlog.000001\t157\t0-1-42\n":                    "is not a MySQL GTID set",
		"binlog.000001\t157\nuuid:1-3\n":                  "without a GTID column",
		"binlog.000001\t157\t3e11:1-x\n":                  "is not a mysql GTID set",
		"\t157\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1\n": "is not \"file<TAB>position",
	} {
		write(t, dir, "xtrabackup_binlog_info", body)
		_, err := ReadBinlogInfo(p, flavor.MySQL)
		require.Error(t, err, body)
		assert.Contains(t, err.Error(), msg, body)
	}
}

// A MySQL GTID set in a MariaDB backup's files is an error, not a MySQL
// backup: the flavor is the caller's, never the set's shape.
func TestReadInfoGTIDOfTheOtherFlavorIsAnError(t *testing.T) {
	_, err := ReadInfo(filepath.Join("testdata", "xtrabackup-8.0", "full"), flavor.MariaDB)
	require.ErrorContains(t, err, "is not a MariaDB GTID")
	dir := t.TempDir()
	write(t, dir, "xtrabackup_info", "tool_name = mariabackup\nbinlog_pos = filename 'binlog.000001', position '821', GTID of the last change '0-1-3'\n")
	_, err = ReadInfo(dir, flavor.MySQL)
	require.ErrorContains(t, err, "is not a MySQL GTID set")
}

func TestReadInfoRejectsDisagreeingFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"xtrabackup_info", "xtrabackup_binlog_info"} {
		b, err := os.ReadFile(filepath.Join("testdata", "xtrabackup-8.4", "full", n))
		require.NoError(t, err)
		write(t, dir, n, string(b))
	}
	_, err := ReadInfo(dir, flavor.MySQL)
	require.NoError(t, err)
	write(t, dir, "xtrabackup_binlog_info", "binlog.000002\t1574\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-58\n")
	_, err = ReadInfo(dir, flavor.MySQL)
	require.ErrorContains(t, err, "disagree")
	// Without a binlog_pos (binlog off in xtrabackup_info), the binlog
	// info file gives the position.
	write(t, dir, "xtrabackup_info", "tool_name = xtrabackup\ntool_version = 8.4.0-2\n")
	in, err := ReadInfo(dir, flavor.MySQL)
	require.NoError(t, err)
	assert.Equal(t, "binlog.000002", in.BinlogFile)
	assert.Equal(t, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-58", in.GTID)
	write(t, dir, "xtrabackup_info", "binlog_pos = position 12\n")
	_, err = ReadInfo(dir, flavor.MySQL)
	require.ErrorContains(t, err, "binlog_pos")
}

func TestReadCheckpointsChecksTheFields(t *testing.T) {
	dir := t.TempDir()
	// The documentation's own example spells "from lsn= 0".
	write(t, dir, "xtrabackup_checkpoints", "backup_type = full-backuped\nfrom lsn= 0\nto_lsn = 15188961605\nlast_lsn = 15188961605\n")
	cp, err := ReadCheckpoints(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(15188961605), cp.ToLSN)
	for body, msg := range map[string]string{
		"backup_type = copied\nto_lsn = 5\n":                          `backup_type "copied" is unknown`,
		"to_lsn = 5\n":                                                "no backup_type",
		"backup_type = incremental\nfrom_lsn = 9\nto_lsn = 5\n":       "after to_lsn",
		"backup_type = incremental\nfrom_lsn = 0\nto_lsn = 5\n":       "from_lsn 0",
		"backup_type = full-backuped\nto_lsn = 5\nredo_memory = -1\n": "redo_memory",
	} {
		write(t, dir, "xtrabackup_checkpoints", body)
		_, err := ReadCheckpoints(dir)
		require.Error(t, err, body)
		assert.Contains(t, err.Error(), msg, body)
	}
	// MariaDB 11's name for the file.
	dir = t.TempDir()
	write(t, dir, "mariadb_backup_checkpoints", "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 7\n")
	cp, err = ReadCheckpoints(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), cp.ToLSN)
}

// xtrabackupOptions are the xtrabackup 8.0/8.4 options Strata may pass
// (Percona's option reference): a mariabackup-only option (--rsync,
// --innobackupex, ...) must not appear.
var xtrabackupOptions = map[string]bool{
	"--defaults-file": true, "--no-defaults": true, "--backup": true, "--prepare": true, "--stream": true,
	"--target-dir": true, "--extra-lsndir": true, "--datadir": true, "--incremental-lsn": true,
	"--incremental-basedir": true, "--incremental-dir": true, "--parallel": true, "--log-copy-interval": true,
	"--apply-log-only": true, "--use-memory": true, "--move-back": true, "--copy-back": true,
}

func checkXtrabackupArgs(t *testing.T, args []string) {
	t.Helper()
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		assert.True(t, xtrabackupOptions[name], "%s is not an xtrabackup 8 option", a)
	}
}

func TestXtrabackupBackupArgs(t *testing.T) {
	full := backupArgs("/s/client.cnf", "/s/target", "/s/lsn", BackupParams{Datadir: "/var/lib/mysql", Parallel: 4})
	assert.Equal(t, []string{"--defaults-file=/s/client.cnf", "--backup", "--stream=xbstream", "--target-dir=/s/target",
		"--extra-lsndir=/s/lsn", "--datadir=/var/lib/mysql", "--parallel=4"}, full)
	checkXtrabackupArgs(t, full)
	assert.Equal(t, "--defaults-file=/s/client.cnf", full[0], "--defaults-file must come first")

	inc := backupArgs("/s/client.cnf", "/s/target", "/s/lsn", BackupParams{Datadir: "/var/lib/mysql",
		IncrementalLSN: 20985432, LogCopyInterval: 250 * time.Millisecond})
	assert.Contains(t, inc, "--incremental-lsn=20985432")
	assert.Contains(t, inc, "--log-copy-interval=250")
	assert.NotContains(t, strings.Join(inc, " "), "--parallel")
	checkXtrabackupArgs(t, inc)
	// Under a millisecond rounds up to the smallest interval, never to 0
	// (the tool's default of a second).
	tiny := backupArgs("c", "t", "l", BackupParams{LogCopyInterval: time.Microsecond})
	assert.Contains(t, tiny, "--log-copy-interval=1")
}

func TestXtrabackupPrepareArgs(t *testing.T) {
	x := &Tool{Name: "xtrabackup", Flavor: flavor.MySQL}
	// The full of a chain with incrementals to come, then a middle
	// incremental: --apply-log-only (no rollback of uncommitted
	// transactions the next incremental may commit).
	base := x.prepareArgs("/r/full", "", true, 1<<30)
	assert.Equal(t, []string{"--no-defaults", "--prepare", "--target-dir=/r/full", "--apply-log-only", "--use-memory=1073741824"}, base)
	mid := x.prepareArgs("/r/full", "/r/inc1", true, 0)
	assert.Equal(t, []string{"--no-defaults", "--prepare", "--target-dir=/r/full", "--apply-log-only", "--incremental-dir=/r/inc1"}, mid)
	// The last incremental (or a full alone) rolls back: no --apply-log-only.
	last := x.prepareArgs("/r/full", "/r/inc2", false, 0)
	assert.Equal(t, []string{"--no-defaults", "--prepare", "--target-dir=/r/full", "--incremental-dir=/r/inc2"}, last)
	for _, a := range [][]string{base, mid, last} {
		checkXtrabackupArgs(t, a)
	}
	// mariabackup applies incrementals without it.
	m := &Tool{Name: "mariabackup", Flavor: flavor.MariaDB}
	assert.NotContains(t, m.prepareArgs("/r/full", "/r/inc1", true, 0), "--apply-log-only")
}

// ForFlavor picks by the flavor given, and refuses one it does not know.
func TestForFlavorPicksByFlavor(t *testing.T) {
	bin := t.TempDir()
	for _, n := range []string{"xtrabackup", "xbstream", "mariabackup", "mbstream"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	}
	paths := Paths{Xtrabackup: filepath.Join(bin, "xtrabackup"), Xbstream: filepath.Join(bin, "xbstream"),
		Mariabackup: filepath.Join(bin, "mariabackup"), Mbstream: filepath.Join(bin, "mbstream")}
	x, err := ForFlavor(flavor.MySQL, paths)
	require.NoError(t, err)
	assert.Equal(t, "xtrabackup", x.Name)
	assert.Equal(t, flavor.MySQL, x.Flavor)
	assert.Equal(t, paths.Xbstream, x.Stream)
	m, err := ForFlavor(flavor.MariaDB, paths)
	require.NoError(t, err)
	assert.Equal(t, "mariabackup", m.Name)
	assert.Equal(t, flavor.MariaDB, m.Flavor)
	_, err = ForFlavor("", paths)
	require.ErrorContains(t, err, "no physical backup tool")
}

// fakeXtrabackup is an xtrabackup that does what the real one does on
// the outside: it writes the files of testdata/<src> into --extra-lsndir,
// a stream to stdout, its lock stages and "completed OK!" to stderr, and
// records its command line.
const fakeXtrabackup = `#!/bin/sh
printf '%s\n' "$@" > "$ARGS_OUT"
for a in "$@"; do
  case "$a" in --extra-lsndir=*) lsn="${a#--extra-lsndir=}" ;; esac
done
cp "$SRC"/xtrabackup_checkpoints "$SRC"/xtrabackup_info "$lsn"/
echo "Executing LOCK INSTANCE FOR BACKUP..." >&2
echo "Executing FLUSH TABLES WITH READ LOCK..." >&2
printf 'XBSTCK01 stream bytes'
echo "Executing UNLOCK TABLES" >&2
echo "completed OK!" >&2
`

// StreamBackup with xtrabackup 8.4: its command line, and the outcome
// read back from the files it leaves in the extra LSN dir.
func TestXtrabackupStreamBackup(t *testing.T) {
	bin := t.TempDir()
	x := filepath.Join(bin, "xtrabackup")
	require.NoError(t, os.WriteFile(x, []byte(fakeXtrabackup), 0o755))
	src, err := filepath.Abs(filepath.Join("testdata", "xtrabackup-8.4", "incremental"))
	require.NoError(t, err)
	argsOut := filepath.Join(bin, "args")
	t.Setenv("SRC", src)
	t.Setenv("ARGS_OUT", argsOut)
	tool := &Tool{Name: "xtrabackup", Flavor: flavor.MySQL, Backup: x}
	scratch := t.TempDir()
	var stream strings.Builder
	blocked := 0
	out, err := tool.StreamBackup(context.Background(), BackupParams{
		Datadir: "/var/lib/mysql", ScratchDir: scratch, IncrementalLSN: 20985432, Parallel: 2,
		OnCommitsBlocked: func() { blocked++ },
	}, func(r io.Reader) error {
		_, err := io.Copy(&stream, r)
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, "XBSTCK01 stream bytes", stream.String())
	assert.Equal(t, 1, blocked)
	assert.Equal(t, uint64(20985432), out.Checkpoints.FromLSN)
	assert.Equal(t, uint64(21460991), out.Checkpoints.ToLSN)
	assert.Equal(t, uint64(1048576), out.Checkpoints.RedoMemory)
	assert.Equal(t, "8.4.0-2", out.Info.ToolVersion)
	assert.Equal(t, "binlog.000003", out.Info.BinlogFile)
	assert.Equal(t, uint64(157), out.Info.BinlogPos)
	assert.Equal(t, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-301,4f22ab58-82db-11e2-8f44-d91bb9530673:1-9", out.Info.GTID)
	assert.False(t, out.ConsistentAt.IsZero())

	b, err := os.ReadFile(argsOut)
	require.NoError(t, err)
	args := strings.Split(strings.TrimSpace(string(b)), "\n")
	checkXtrabackupArgs(t, args)
	assert.True(t, strings.HasPrefix(args[0], "--defaults-file="), args[0])
	for _, want := range []string{"--backup", "--stream=xbstream", "--datadir=/var/lib/mysql", "--incremental-lsn=20985432", "--parallel=2"} {
		assert.Contains(t, args, want)
	}
	// The scratch dir (option file with the password, target, LSN dir)
	// is gone.
	left, err := os.ReadDir(scratch)
	require.NoError(t, err)
	assert.Empty(t, left)
}
