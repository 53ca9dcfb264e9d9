package physical

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Checkpoints is the content of xtrabackup_checkpoints.
type Checkpoints struct {
	BackupType string // full-backuped, incremental, log-applied, full-prepared
	FromLSN    uint64
	ToLSN      uint64
	LastLSN    uint64
}

// Info is what Strata keeps of xtrabackup_info and xtrabackup_binlog_info.
type Info struct {
	ToolName      string
	ToolVersion   string
	ServerVersion string
	BinlogFile    string
	BinlogPos     uint64
	GTID          string
}

// readKV reads a "key = value" file.
func readKV(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv, sc.Err()
}

// ReadCheckpoints parses DIR/xtrabackup_checkpoints.
func ReadCheckpoints(dir string) (*Checkpoints, error) {
	kv, err := readKV(filepath.Join(dir, "xtrabackup_checkpoints"))
	if err != nil {
		return nil, fmt.Errorf("read xtrabackup_checkpoints: %w", err)
	}
	c := &Checkpoints{BackupType: kv["backup_type"]}
	for k, dst := range map[string]*uint64{"from_lsn": &c.FromLSN, "to_lsn": &c.ToLSN, "last_lsn": &c.LastLSN} {
		if v, ok := kv[k]; ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("xtrabackup_checkpoints: %s = %q is not a number", k, v)
			}
			*dst = n
		}
	}
	if c.BackupType == "" || c.ToLSN == 0 {
		return nil, fmt.Errorf("xtrabackup_checkpoints in %s is incomplete (backup_type %q, to_lsn %d)", dir, c.BackupType, c.ToLSN)
	}
	return c, nil
}

// binlog_pos = filename 'binlog.000001', position '821', GTID of the last change '0-1-3'
var binlogPosRE = regexp.MustCompile(`filename '([^']*)', position '?(\d+)'?(?:, GTID of the last change '([^']*)')?`)

// ReadInfo parses DIR/xtrabackup_info.
func ReadInfo(dir string) (*Info, error) {
	kv, err := readKV(filepath.Join(dir, "xtrabackup_info"))
	if err != nil {
		return nil, fmt.Errorf("read xtrabackup_info: %w", err)
	}
	in := &Info{ToolName: kv["tool_name"], ToolVersion: kv["tool_version"], ServerVersion: kv["server_version"]}
	if m := binlogPosRE.FindStringSubmatch(kv["binlog_pos"]); m != nil {
		in.BinlogFile = m[1]
		in.BinlogPos, _ = strconv.ParseUint(m[2], 10, 64)
		in.GTID = m[3]
	}
	// MySQL's xtrabackup writes the GTID set to its own key.
	if in.GTID == "" {
		in.GTID = strings.Trim(kv["gtid_executed"], "'")
	}
	return in, nil
}
