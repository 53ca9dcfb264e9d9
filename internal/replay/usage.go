package replay

import (
	"os"
	"strconv"
	"strings"

	"github.com/strata-backup/strata/internal/flavor"
)

// serverTuning are the replay server's options: no grant tables, no binary
// log, no durability. A replay that fails, or a crash of the host while it
// runs, leaves the marker, and the backup is restored again (nothing the
// replay wrote needs to survive a crash); at its end the server's clean
// shutdown writes and syncs every page. So: no redo sync at commit
// (innodb_flush_log_at_trx_commit=2: the redo still reaches the page cache
// at each commit, so a crash of the server process alone, after the replay
// reached its target and before its shutdown finished, loses nothing to
// its recovery), no doublewrite (a torn page needs a host crash, which the
// marker covers), and buffered
// I/O (innodb_flush_method=fsync): pages the buffer pool evicts are read
// back from the host's page cache when it holds them (a datadir just
// restored mostly is), not from the disk, and writes go to the page cache
// at once. The page cache is the kernel's: it takes memory only while the
// host has it free. Measured in BenchmarkReplayLarge.
func serverTuning(f flavor.Name) []string {
	o := []string{"--skip-grant-tables", "--skip-log-bin", "--sync-binlog=0", "--innodb-flush-log-at-trx-commit=2", "--innodb-flush-method=fsync"}
	if f == flavor.MySQL {
		// innodb_doublewrite is an enum since MySQL 8.0.30; the GTIDs of
		// the replayed transactions are kept (in mysql.gtid_executed, as
		// the binlog is off), which SET GTID_NEXT and UNTIL SQL_AFTER_GTIDS
		// need.
		// No file import or export and no X protocol listener on a server
		// without grant tables.
		return append(o, "--innodb-doublewrite=OFF", "--gtid-mode=ON", "--enforce-gtid-consistency=ON",
			"--secure-file-priv=NULL", "--mysqlx=OFF")
	}
	return append(o, "--innodb-doublewrite=0")
}

// Usage is what the replay server spent while applying: CPU time, and the
// bytes it read from and wrote to storage (reads served by the host's page
// cache are not counted: /proc/<pid>/io read_bytes).
type Usage struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	ReadBytes  int64   `json:"read_bytes"`
	WriteBytes int64   `json:"write_bytes"`
}

func (u Usage) since(before Usage) Usage {
	return Usage{CPUSeconds: u.CPUSeconds - before.CPUSeconds, ReadBytes: u.ReadBytes - before.ReadBytes, WriteBytes: u.WriteBytes - before.WriteBytes}
}

// readUsage reads the usage of process pid so far; what it cannot read
// stays 0.
func readUsage(pid int) Usage {
	var u Usage
	if pid <= 0 {
		return u
	}
	dir := "/proc/" + strconv.Itoa(pid)
	if b, err := os.ReadFile(dir + "/stat"); err == nil {
		// The fields after the command name, which is in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				u.CPUSeconds = float64(ut+st) / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	if b, err := os.ReadFile(dir + "/io"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ": ")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch {
			case !ok:
			case k == "read_bytes":
				u.ReadBytes = n
			case k == "write_bytes":
				u.WriteBytes = n
			}
		}
	}
	return u
}
