// Package physical runs the hot physical backup tools — mariabackup for
// MariaDB, xtrabackup for MySQL 8 — and their stream extractors, with every
// child process in its own process group so that a cancelled activity leaves
// nothing running and no temp files behind.
package physical

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/mysqlx"
)

// ErrToolMissing is wrapped when a required binary cannot be found.
var ErrToolMissing = errors.New("backup tool not found")

// Tool is the pair of binaries for one server flavor.
type Tool struct {
	Name   string      // mariabackup | xtrabackup
	Flavor flavor.Name // the servers it backs up
	Backup string      // path of mariabackup/xtrabackup
	Stream string      // path of mbstream/xbstream
}

// Paths overrides tool locations; empty fields are looked up in PATH.
type Paths struct {
	Mariabackup, Mbstream, Xtrabackup, Xbstream string
}

// ForFlavor picks and locates the tool for a server flavor.
func ForFlavor(f flavor.Name, p Paths) (*Tool, error) {
	var t *Tool
	var defBackup, defStream, pkg string
	switch f {
	case flavor.MariaDB:
		t = &Tool{Name: "mariabackup", Flavor: f, Backup: p.Mariabackup, Stream: p.Mbstream}
		defBackup, defStream, pkg = "mariabackup", "mbstream", "mariadb-backup"
	case flavor.MySQL:
		t = &Tool{Name: "xtrabackup", Flavor: f, Backup: p.Xtrabackup, Stream: p.Xbstream}
		defBackup, defStream, pkg = "xtrabackup", "xbstream", "percona-xtrabackup-80"
	default:
		return nil, fmt.Errorf("no physical backup tool for server flavor %q (want %q or %q)", f, flavor.MariaDB, flavor.MySQL)
	}
	var err error
	if t.Backup, err = locate(t.Backup, defBackup, pkg, "tools."+defBackup); err != nil {
		return nil, err
	}
	if t.Stream, err = locate(t.Stream, defStream, pkg, "tools."+defStream); err != nil {
		return nil, err
	}
	return t, nil
}

func locate(configured, name, pkg, key string) (string, error) {
	if configured != "" {
		if st, err := os.Stat(configured); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: %s = %s is not an executable file on this agent; fix %s", ErrToolMissing, key, configured, key)
		}
		return configured, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
			if st, e := os.Stat(filepath.Join(dir, name)); e == nil && st.Mode()&0o111 != 0 {
				return filepath.Join(dir, name), nil
			}
		}
		return "", fmt.Errorf("%w: %s is not installed on this agent (install the %s package, or set %s)", ErrToolMissing, name, pkg, key)
	}
	return p, nil
}

// BackupParams describe one streamed backup.
type BackupParams struct {
	Endpoint   mysqlx.Endpoint
	Datadir    string
	ScratchDir string // parent of the tool's temp dir ("" = os.TempDir())
	// IncrementalLSN, when non-zero, takes an incremental backup of pages
	// changed since this LSN.
	IncrementalLSN uint64
	// Parallel is the tool's --parallel (file copy threads), 0 = tool default.
	Parallel int
	// LogCopyInterval is the tool's --log-copy-interval, rounded down to
	// whole milliseconds (at least 1); 0 = the tool's default (1s). Commits
	// stay blocked at the consistent point until the redo copy thread's
	// next poll, so this bounds the write stall a backup causes.
	LogCopyInterval time.Duration
	// Log receives every line the tool writes to stderr (optional).
	Log func(line string)
	// OnCommitsBlocked, when set, is called once, as soon as the tool
	// reports that commits are blocked (BACKUP STAGE BLOCK_COMMIT
	// acquired, or FLUSH TABLES WITH READ LOCK / LOCK BINLOG FOR BACKUP):
	// the moment of the backup's consistent point. It is called while the
	// tool's output is read, before StreamBackup returns, so it must return
	// at once (signal a goroutine): the tool waits while it runs.
	OnCommitsBlocked func()
}

// BackupOutcome is what the tool reported about the backup it streamed.
type BackupOutcome struct {
	Checkpoints Checkpoints
	Info        Info
	// CommitsBlocked is how long commits were blocked (BACKUP STAGE
	// BLOCK_COMMIT or FLUSH TABLES WITH READ LOCK until unlock).
	CommitsBlocked time.Duration
	// DDLBlocked is how long DDL was blocked (BLOCK_DDL / backup lock until unlock).
	DDLBlocked time.Duration
	// ConsistentAt is when the consistent point was taken (agent clock).
	ConsistentAt time.Time
	StartTime    time.Time
	EndTime      time.Time
}

// stageClock timestamps lock stages as the tool reports them.
type stageClock struct {
	mu                         sync.Mutex
	ddlStart, commitStart, end time.Time
	onCommitsBlocked           func()
}

func (s *stageClock) line(l string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.Contains(l, "BACKUP STAGE BLOCK_DDL") && s.ddlStart.IsZero(),
		strings.Contains(l, "Executing LOCK TABLES FOR BACKUP") && s.ddlStart.IsZero(),
		strings.Contains(l, "Executing LOCK INSTANCE FOR BACKUP") && s.ddlStart.IsZero():
		s.ddlStart = now
	case strings.Contains(l, "Acquired locks for BACKUP STAGE BLOCK_COMMIT"),
		strings.Contains(l, "Executing FLUSH TABLES WITH READ LOCK") && s.commitStart.IsZero(),
		strings.Contains(l, "Executing LOCK BINLOG FOR BACKUP") && s.commitStart.IsZero():
		if s.commitStart.IsZero() && s.onCommitsBlocked != nil {
			s.onCommitsBlocked()
		}
		s.commitStart = now
		if s.ddlStart.IsZero() {
			s.ddlStart = now
		}
	case strings.Contains(l, "All tables unlocked"), strings.Contains(l, "Executing UNLOCK TABLES"),
		strings.Contains(l, "Executing UNLOCK INSTANCE"):
		if s.end.IsZero() {
			s.end = now
		}
	}
}

// StreamBackup runs the backup tool with --stream=xbstream and hands its
// stdout to consume. If consume fails or ctx ends, the tool's whole process
// group is killed. The tool's temp dir is always removed.
func (t *Tool) StreamBackup(ctx context.Context, p BackupParams, consume func(io.Reader) error) (*BackupOutcome, error) {
	work, err := os.MkdirTemp(p.ScratchDir, "strata-backup-")
	if err != nil {
		return nil, fmt.Errorf("create scratch dir (agent.scratch_dir): %w", err)
	}
	defer os.RemoveAll(work)
	if err := markOwner(work); err != nil {
		return nil, err
	}
	cnf := filepath.Join(work, "client.cnf")
	if err := WriteClientCnf(cnf, p.Endpoint); err != nil {
		return nil, err
	}
	target, lsnDir := filepath.Join(work, "target"), filepath.Join(work, "lsn")
	for _, d := range []string{target, lsnDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	args := backupArgs(cnf, target, lsnDir, p)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := command(cctx, t.Backup, args...)
	cmd.Dir = work
	clock := stageClock{onCommitsBlocked: p.OnCommitsBlocked}
	tail := newTail(200, func(l string) {
		clock.line(l)
		if p.Log != nil {
			p.Log(l)
		}
	})
	cmd.Stderr = tail
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	out := &BackupOutcome{StartTime: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", t.Backup, err)
	}
	consumeErr := consume(stdout)
	if consumeErr != nil {
		cancel() // kill the tool: nobody reads its stream any more
	} else {
		// Drain anything left so the tool never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}
	waitErr := cmd.Wait()
	out.EndTime = time.Now()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if consumeErr != nil {
		return nil, consumeErr
	}
	if waitErr != nil {
		return nil, &ToolError{Tool: t.Name, Op: "backup", Err: waitErr, Tail: tail.lastLines(25)}
	}
	if !strings.Contains(tail.lastLines(5), "completed OK!") {
		return nil, &ToolError{Tool: t.Name, Op: "backup", Err: errors.New("exited without 'completed OK!'"), Tail: tail.lastLines(25)}
	}
	cp, err := ReadCheckpoints(lsnDir)
	if err != nil {
		return nil, err
	}
	info, err := ReadInfo(lsnDir, t.Flavor)
	if err != nil {
		return nil, err
	}
	out.Checkpoints, out.Info = *cp, *info
	clock.mu.Lock()
	defer clock.mu.Unlock()
	if !clock.end.IsZero() {
		if !clock.commitStart.IsZero() {
			out.CommitsBlocked = clock.end.Sub(clock.commitStart)
			out.ConsistentAt = clock.commitStart
		}
		if !clock.ddlStart.IsZero() {
			out.DDLBlocked = clock.end.Sub(clock.ddlStart)
		}
	}
	if out.ConsistentAt.IsZero() {
		out.ConsistentAt = out.EndTime
	}
	return out, nil
}

// backupArgs is the backup tool's command line for p, given its option
// file, target dir and extra LSN dir.
func backupArgs(cnf, target, lsnDir string, p BackupParams) []string {
	args := []string{"--defaults-file=" + cnf, "--backup", "--stream=xbstream",
		"--target-dir=" + target, "--extra-lsndir=" + lsnDir, "--datadir=" + p.Datadir}
	if p.IncrementalLSN > 0 {
		args = append(args, "--incremental-lsn="+strconv.FormatUint(p.IncrementalLSN, 10))
	}
	if p.Parallel > 0 {
		args = append(args, "--parallel="+strconv.Itoa(p.Parallel))
	}
	if p.LogCopyInterval > 0 {
		args = append(args, "--log-copy-interval="+strconv.FormatInt(max(p.LogCopyInterval.Milliseconds(), 1), 10))
	}
	return args
}

// ToolError is a failed run of an external tool, with the end of its output.
type ToolError struct {
	Tool string
	Op   string
	Err  error
	Tail string
}

func (e *ToolError) Error() string {
	return fmt.Sprintf("%s %s failed: %v\n--- last lines of %s output ---\n%s", e.Tool, e.Op, e.Err, e.Tool, e.Tail)
}

func (e *ToolError) Unwrap() error { return e.Err }

// WriteClientCnf writes the connection options to a 0600 option file so the
// password never appears on a command line.
func WriteClientCnf(path string, ep mysqlx.Endpoint) error {
	var b strings.Builder
	b.WriteString("[client]\n")
	fmt.Fprintf(&b, "user=%s\n", quoteOpt(ep.User))
	if ep.Password != "" {
		fmt.Fprintf(&b, "password=%s\n", quoteOpt(ep.Password))
	}
	if ep.Socket != "" {
		fmt.Fprintf(&b, "socket=%s\n", quoteOpt(ep.Socket))
	} else {
		host, port, ok := strings.Cut(ep.Address, ":")
		if host == "localhost" {
			host = "127.0.0.1" // force TCP: "localhost" means the default socket to libmysql
		}
		fmt.Fprintf(&b, "host=%s\n", quoteOpt(host))
		if ok {
			fmt.Fprintf(&b, "port=%s\nprotocol=TCP\n", port)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write client option file: %w", err)
	}
	return nil
}

// quoteOpt quotes a value for a MySQL option file (escapes \ and ").
func quoteOpt(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(v) + `"`
}

// Extract starts `mbstream -x -C dir` (or xbstream) and returns its stdin;
// closing the writer and calling wait finishes the extraction. The pipe to
// the extractor is widened to extractPipeSize where the kernel allows it:
// the stream is written in chunks of megabytes, and a 64 KiB pipe would
// switch between the writer and the extractor for every 64 KiB. parallel
// is the extractor's --parallel, its threads writing files (0 or 1: one).
func (t *Tool) Extract(ctx context.Context, dir string, parallel int) (w io.WriteCloser, wait func() error, err error) {
	args := []string{"-x", "-C", dir}
	if parallel > 1 {
		args = append(args, "--parallel="+strconv.Itoa(parallel))
	}
	cmd := command(ctx, t.Stream, args...)
	tail := newTail(50, nil)
	cmd.Stderr = tail
	cmd.Stdout = tail
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	widenPipe(pw, extractPipeSize)
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, nil, fmt.Errorf("start %s: %w", t.Stream, err)
	}
	pr.Close() // the child has its copy
	return pw, func() error {
		err := cmd.Wait()
		_ = pw.Close() // in case the caller did not
		if err != nil {
			return &ToolError{Tool: filepath.Base(t.Stream), Op: "extract", Err: err, Tail: tail.lastLines(20)}
		}
		return nil
	}, nil
}

// extractPipeSize is the pipe buffer Extract asks for (Linux's default
// limit for unprivileged processes, /proc/sys/fs/pipe-max-size, is 1 MiB).
const extractPipeSize = 1 << 20

// widenPipe asks the kernel for a pipe buffer of size bytes; the default
// one is kept when it refuses.
func widenPipe(f *os.File, size int) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size) })
	}
}

// Prepare applies the redo log to a full backup in dir; with incDir set it
// applies that incremental onto dir instead. more says that further
// incrementals follow: xtrabackup must then skip the rollback phase
// (--apply-log-only); mariabackup handles that by itself.
func (t *Tool) Prepare(ctx context.Context, dir, incDir string, more bool, useMemory int64, log func(string)) error {
	return t.run(ctx, "prepare", log, t.prepareArgs(dir, incDir, more, useMemory)...)
}

// prepareArgs is the tool's command line for Prepare.
func (t *Tool) prepareArgs(dir, incDir string, more bool, useMemory int64) []string {
	args := []string{"--no-defaults", "--prepare", "--target-dir=" + dir}
	if more && t.Flavor == flavor.MySQL {
		args = append(args, "--apply-log-only")
	}
	if useMemory > 0 {
		args = append(args, "--use-memory="+strconv.FormatInt(useMemory, 10))
	}
	if incDir != "" {
		args = append(args, "--incremental-dir="+incDir)
	}
	return args
}

// MoveBack moves a prepared backup into an empty datadir.
func (t *Tool) MoveBack(ctx context.Context, dir, datadir string, log func(string)) error {
	return t.run(ctx, "move-back", log, "--no-defaults", "--move-back", "--target-dir="+dir, "--datadir="+datadir)
}

func (t *Tool) run(ctx context.Context, op string, log func(string), args ...string) error {
	cmd := command(ctx, t.Backup, args...)
	tail := newTail(200, log)
	cmd.Stderr = tail
	cmd.Stdout = tail
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &ToolError{Tool: t.Name, Op: op, Err: err, Tail: tail.lastLines(25)}
	}
	return nil
}
