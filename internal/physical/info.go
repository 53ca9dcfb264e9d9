package physical

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
)

// The files the backup tools write beside the data (and, with
// --extra-lsndir, into that directory too). MariaDB 11 renamed them
// mariadb_backup_*; the older names are tried first.
var (
	checkpointsFiles = []string{"xtrabackup_checkpoints", "mariadb_backup_checkpoints"}
	infoFiles        = []string{"xtrabackup_info", "mariadb_backup_info"}
	binlogInfoFiles  = []string{"xtrabackup_binlog_info", "mariadb_backup_binlog_info"}
)

// Backup types of xtrabackup_checkpoints.
const (
	BackupTypeFull         = "full-backuped"
	BackupTypeIncremental  = "incremental"
	BackupTypeLogApplied   = "log-applied"
	BackupTypeFullPrepared = "full-prepared"
)

// Checkpoints is the content of xtrabackup_checkpoints: the backup's type
// and state and the LSN range it holds.
type Checkpoints struct {
	BackupType string // full-backuped, incremental, log-applied, full-prepared
	FromLSN    uint64
	ToLSN      uint64
	LastLSN    uint64
	// FlushedLSN is the checkpoint LSN at the end of the backup
	// (xtrabackup 8.0 and later; 0 when absent).
	FlushedLSN uint64
	// RedoMemory and RedoFrames are what xtrabackup 8.0.33 and later
	// record of the redo log it buffered in memory (0 when absent).
	RedoMemory uint64
	RedoFrames uint64
}

// Info is what Strata keeps of xtrabackup_info and
// xtrabackup_binlog_info.
type Info struct {
	UUID            string
	Name            string // --history name, usually empty
	ToolName        string // xtrabackup | mariabackup
	ToolCommand     string
	ToolVersion     string
	IbbackupVersion string
	ServerVersion   string
	StartTime       string // "2024-05-02 10:11:12", the tool's local time
	EndTime         string
	LockTime        int64 // seconds the tool held its locks
	BinlogFile      string
	BinlogPos       uint64
	// GTID is the executed GTID set at the consistent point, normalised
	// (MySQL: uuid:intervals; MariaDB: domain-server-seq per domain).
	GTID          string
	InnoDBFromLSN uint64
	InnoDBToLSN   uint64
	Partial       bool
	Incremental   bool
	Format        string // xbstream | tar | file
	Compressed    bool
	Encrypted     bool
}

// readKV reads a "key = value" file. A line without '=' continues the
// value of the key before it (MySQL prints a GTID set of several uuids
// over several lines, one uuid after each comma). Keys are normalised:
// lower case, inner blanks as '_' ("from lsn" is "from_lsn").
func readKV(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]string{}
	last := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			if t := strings.TrimSpace(line); t != "" && last != "" {
				kv[last] += "\n" + t
			}
			continue
		}
		last = strings.ToLower(strings.Join(strings.Fields(k), "_"))
		kv[last] = strings.TrimSpace(v)
	}
	return kv, sc.Err()
}

// readFirst reads the first of names that exists in dir with read.
func readFirst[T any](dir string, names []string, read func(path string) (T, error)) (T, string, error) {
	var zero T
	for _, n := range names {
		p := filepath.Join(dir, n)
		v, err := read(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return v, n, err
	}
	return zero, names[0], fmt.Errorf("%s: %w", filepath.Join(dir, names[0]), fs.ErrNotExist)
}

// ReadCheckpoints parses DIR/xtrabackup_checkpoints.
func ReadCheckpoints(dir string) (*Checkpoints, error) {
	kv, name, err := readFirst(dir, checkpointsFiles, readKV)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	c := &Checkpoints{BackupType: kv["backup_type"]}
	for _, f := range []struct {
		key string
		dst *uint64
	}{{"from_lsn", &c.FromLSN}, {"to_lsn", &c.ToLSN}, {"last_lsn", &c.LastLSN}, {"flushed_lsn", &c.FlushedLSN},
		{"redo_memory", &c.RedoMemory}, {"redo_frames", &c.RedoFrames}} {
		v, ok := kv[f.key]
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s in %s: %s = %q is not a number", name, dir, f.key, v)
		}
		*f.dst = n
	}
	switch c.BackupType {
	case BackupTypeFull, BackupTypeIncremental, BackupTypeLogApplied, BackupTypeFullPrepared:
	case "":
		return nil, fmt.Errorf("%s in %s is incomplete: no backup_type", name, dir)
	default:
		return nil, fmt.Errorf("%s in %s: backup_type %q is unknown (want %s, %s, %s or %s)", name, dir, c.BackupType,
			BackupTypeFull, BackupTypeIncremental, BackupTypeLogApplied, BackupTypeFullPrepared)
	}
	if c.ToLSN == 0 {
		return nil, fmt.Errorf("%s in %s is incomplete (backup_type %q, to_lsn %d)", name, dir, c.BackupType, c.ToLSN)
	}
	if c.FromLSN > c.ToLSN {
		return nil, fmt.Errorf("%s in %s: from_lsn %d is after to_lsn %d", name, dir, c.FromLSN, c.ToLSN)
	}
	if c.BackupType == BackupTypeIncremental && c.FromLSN == 0 {
		return nil, fmt.Errorf("%s in %s: an incremental backup with from_lsn 0", name, dir)
	}
	return c, nil
}

// binlog_pos = filename 'binlog.000001', position '821', GTID of the last change '0-1-3'
var binlogPosRE = regexp.MustCompile(`(?s)^filename '([^']*)', position '?(\d+)'?(?:, GTID of the last change '([^']*)')?`)

// ReadInfo parses DIR/xtrabackup_info of a backup of a server of flavor
// f, and DIR/xtrabackup_binlog_info when it is there too (it is in the
// backup itself, not in an --extra-lsndir): its position and GTID set
// must then agree with binlog_pos. The GTID set is parsed as f's.
func ReadInfo(dir string, f flavor.Name) (*Info, error) {
	kv, name, err := readFirst(dir, infoFiles, readKV)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	in := &Info{UUID: kv["uuid"], Name: kv["name"], ToolName: kv["tool_name"], ToolCommand: kv["tool_command"],
		ToolVersion: kv["tool_version"], IbbackupVersion: kv["ibbackup_version"], ServerVersion: kv["server_version"],
		StartTime: kv["start_time"], EndTime: kv["end_time"], Format: kv["format"],
		Partial: yes(kv["partial"]), Incremental: yes(kv["incremental"]), Compressed: yes(kv["compressed"]), Encrypted: yes(kv["encrypted"])}
	in.LockTime, _ = strconv.ParseInt(kv["lock_time"], 10, 64) // informational only
	for _, n := range []struct {
		key string
		dst *uint64
	}{{"innodb_from_lsn", &in.InnoDBFromLSN}, {"innodb_to_lsn", &in.InnoDBToLSN}} {
		if v, ok := kv[n.key]; ok && v != "" {
			if *n.dst, err = strconv.ParseUint(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%s in %s: %s = %q is not a number", name, dir, n.key, v)
			}
		}
	}
	gtidText := ""
	if v := kv["binlog_pos"]; v != "" {
		m := binlogPosRE.FindStringSubmatch(v)
		if m == nil {
			return nil, fmt.Errorf("%s in %s: binlog_pos %q is not \"filename '...', position '...'[, GTID of the last change '...']\"", name, dir, clipText(v))
		}
		in.BinlogFile = m[1]
		if in.BinlogPos, err = strconv.ParseUint(m[2], 10, 64); err != nil {
			return nil, fmt.Errorf("%s in %s: binlog_pos position %q is not a number", name, dir, m[2])
		}
		gtidText = m[3]
	}
	set, err := gtid.Parse(f, gtidText)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: GTID of the last change: %w", name, dir, err)
	}
	bi, biName, err := readFirst(dir, binlogInfoFiles, func(p string) (*BinlogInfo, error) { return ReadBinlogInfo(p, f) })
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case in.BinlogFile == "":
		in.BinlogFile, in.BinlogPos, set = bi.File, bi.Pos, bi.GTID
	case bi.File != in.BinlogFile || bi.Pos != in.BinlogPos || !bi.GTID.Equal(set):
		return nil, fmt.Errorf("%s (%s:%d, GTID %q) and %s (%s:%d, GTID %q) in %s disagree on the backup's binlog position",
			biName, bi.File, bi.Pos, bi.GTID, name, in.BinlogFile, in.BinlogPos, set, dir)
	}
	in.GTID = set.String()
	return in, nil
}

// BinlogInfo is the content of xtrabackup_binlog_info: the binlog file,
// the position and the executed GTID set at the backup's consistent point.
type BinlogInfo struct {
	File string
	Pos  uint64
	GTID gtid.Set
}

// ReadBinlogInfo parses an xtrabackup_binlog_info file: "file<TAB>position"
// and, with GTIDs on, "<TAB>gtid set"; a MySQL set of several uuids goes on
// over the following lines, one uuid after each comma.
func ReadBinlogInfo(path string, f flavor.Name) (*BinlogInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	fields := strings.Split(strings.TrimRight(first, "\r"), "\t")
	if len(fields) < 2 || len(fields) > 3 || fields[0] == "" {
		return nil, fmt.Errorf("%s: %q is not \"file<TAB>position[<TAB>GTID set]\"", path, clipText(first))
	}
	pos, err := strconv.ParseUint(strings.TrimSpace(fields[1]), 10, 64)
	if err != nil || pos < 4 {
		return nil, fmt.Errorf("%s: position %q is not a binlog offset", path, fields[1])
	}
	text := rest
	if len(fields) == 3 {
		text = fields[2] + "\n" + rest
	} else if strings.TrimSpace(rest) != "" {
		return nil, fmt.Errorf("%s: text after the position without a GTID column: %q", path, clipText(rest))
	}
	set, err := gtid.Parse(f, text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &BinlogInfo{File: strings.TrimSpace(fields[0]), Pos: pos, GTID: set}, nil
}

func yes(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "Y") }

func clipText(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
