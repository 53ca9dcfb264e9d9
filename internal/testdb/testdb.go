// Package testdb starts and stops real, throwaway MariaDB servers (mariadbd)
// for tests and for the demo.
//
// Every server runs as a child process in its own process group with
// --no-defaults, so no system configuration file or system service is ever
// involved. Binary logging (ROW format, GTID strict mode, log_slave_updates),
// innodb_flush_log_at_trx_commit=1, sync_binlog=1 and skip-name-resolve are
// always on. After Init, root can log in with the server's Password over TCP
// to 127.0.0.1 (and over the Unix socket), which is how mariabackup connects.
//
// With Options.Flavor set to flavor.MySQL the server is a MySQL (9.7, from
// the chroot `make deps` builds under .cache/mysql; see MySQLDir), started
// with GTIDs on (gtid_mode=ON, enforce_gtid_consistency), the same binary
// logging and durability settings, --secure-file-priv="" and --mysqlx=OFF.
//
// Tests normally use ForTest, which fails (or, with STRATA_ALLOW_SKIP=1,
// skips) when the MariaDB binaries are missing, and stops the server when the
// test ends.
package testdb

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/strata-backup/strata/internal/flavor"
)

// Defaults used when the corresponding Options field is zero.
const (
	DefaultServerID         = 1
	DefaultInnoDBBufferPool = "128M"
	DefaultStartTimeout     = 60 * time.Second
	// StopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
	StopTimeout = 60 * time.Second
)

// Options configures a server started by Init or StartExisting.
type Options struct {
	// BaseDir is where the datadir (BaseDir/data) and the server log go.
	// Required for Init. For StartExisting it defaults to the parent
	// directory of the datadir.
	BaseDir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free port.
	Port int
	// ServerID is the server_id; 0 means DefaultServerID (1).
	ServerID int
	// Password is the root password. For Init, "" means a random password
	// (see Server.Password). For StartExisting it is the password already
	// stored in the datadir ("" = empty password).
	Password string
	// ExtraArgs are appended to the mariadbd command line, so they override
	// the built-in settings.
	ExtraArgs []string
	// InitArgs are appended to the mariadb-install-db command line (Init
	// only), e.g. options that must be fixed at creation time such as
	// --innodb-page-size.
	InitArgs []string
	// InnoDBBufferPool is innodb_buffer_pool_size; "" means "128M".
	InnoDBBufferPool string
	// Stdout, if set, receives a copy of the server log.
	Stdout io.Writer
	// StartTimeout bounds how long startup may take until the server
	// answers; 0 means DefaultStartTimeout (60s).
	StartTimeout time.Duration
	// Flavor is the server to run: "" or flavor.MariaDB for mariadbd,
	// flavor.MySQL for MySQL's mysqld from the chroot (see MySQLDir).
	Flavor flavor.Name
}

// Server is a running mariadbd child process.
type Server struct {
	// Datadir is the absolute path of the data directory.
	Datadir string
	// Socket is the Unix socket path (in a short directory under /tmp).
	Socket string
	// Port is the TCP port the server listens on at 127.0.0.1.
	Port int
	// User is the administrative user, always "root".
	User string
	// Password is root's password.
	Password string
	// ServerID is the server_id the server runs with.
	ServerID int
	// LogPath is the file that receives the server's error log.
	LogPath string
	// Flavor is the kind of server: flavor.MariaDB or flavor.MySQL.
	Flavor flavor.Name

	cmd     *exec.Cmd
	sockDir string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed

	mu      sync.Mutex
	stopped bool
	stopErr error
}

// binary names, in order of preference, for each tool we need.
var toolNames = map[string][]string{
	"mariadbd":           {"mariadbd", "mysqld"},
	"mariadb-install-db": {"mariadb-install-db", "mysql_install_db"},
	"mariabackup":        {"mariabackup", "mariadb-backup"},
	"mbstream":           {"mbstream", "mariadb-mbstream"},
}

// extraBinDirs are searched after PATH: mariadbd lives in /usr/sbin on
// Debian, which is often not on a non-root user's PATH.
var extraBinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/mysql/bin"}

// Binary returns the absolute path of a MariaDB tool ("mariadbd",
// "mariadb-install-db", "mariabackup", "mbstream", or any other executable
// name), searching PATH and then the usual sbin/bin directories. Known tools
// also accept their legacy/alternative names (e.g. mysqld, mariadb-backup).
func Binary(name string) (string, error) {
	names := toolNames[name]
	if names == nil {
		names = []string{name}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return abs, nil
			}
			return p, nil
		}
	}
	for _, n := range names {
		for _, dir := range extraBinDirs {
			p := filepath.Join(dir, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s", name, strings.Join(extraBinDirs, ", "))
}

// Available reports whether everything needed to run test servers and
// backups is installed: mariadbd, mariadb-install-db, mariabackup and
// mbstream. The error says what is missing and to run `make deps`.
func Available() error {
	var missing []string
	for _, name := range []string{"mariadbd", "mariadb-install-db", "mariabackup", "mbstream"} {
		if _, err := Binary(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("MariaDB tools not found: %s (looked on PATH and in /usr/sbin); "+
			"run `make deps` (scripts/setup.sh) to install mariadb-server, mariadb-backup and mariadb-client",
			strings.Join(missing, ", "))
	}
	return nil
}

// MySQLDir returns the directory of the MySQL chroot that `make deps`
// builds (it holds root/, the chroot, and bin/, the wrappers mysqld,
// mysql, mysqlbinlog, mysqladmin and mysqldump that run them there):
// $STRATA_MYSQL_DIR, else .cache/mysql of the module this process runs in
// (found from the working directory upwards).
func MySQLDir() (string, error) {
	if d := os.Getenv("STRATA_MYSQL_DIR"); d != "" {
		return filepath.Abs(d)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "mysql"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: set STRATA_MYSQL_DIR to the MySQL chroot's directory")
		}
		dir = parent
	}
}

// MySQLBinary returns the wrapper of a MySQL tool ("mysqld", "mysql",
// "mysqlbinlog", "mysqladmin", "mysqldump") in MySQLDir()/bin.
func MySQLBinary(name string) (string, error) {
	dir, err := MySQLDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "bin", name)
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("MySQL tool %s not found: the MySQL chroot is not built (run `make deps`, step \"MySQL chroot\" of scripts/setup.sh; it needs root, debootstrap and Debian's unstable suite)", p)
	}
	return p, nil
}

// AvailableMySQL reports whether the MySQL chroot's server and client are
// there; the error names the step of `make deps` that builds them.
func AvailableMySQL() error {
	for _, name := range []string{"mysqld", "mysql", "mysqlbinlog"} {
		if _, err := MySQLBinary(name); err != nil {
			return err
		}
	}
	return nil
}

// Require fails the test if Available reports an error. Only when the
// environment variable STRATA_ALLOW_SKIP=1 is set does it skip the test
// instead, so CI can never silently skip database tests.
func Require(tb testing.TB) {
	tb.Helper()
	err := Available()
	if err == nil {
		return
	}
	if os.Getenv("STRATA_ALLOW_SKIP") == "1" {
		tb.Skipf("skipping (STRATA_ALLOW_SKIP=1): %v", err)
	}
	tb.Fatalf("%v (set STRATA_ALLOW_SKIP=1 to skip instead)", err)
}

// RequireMySQL is Require for the MySQL chroot (AvailableMySQL).
func RequireMySQL(tb testing.TB) {
	tb.Helper()
	err := AvailableMySQL()
	if err == nil {
		return
	}
	if os.Getenv("STRATA_ALLOW_SKIP") == "1" {
		tb.Skipf("skipping (STRATA_ALLOW_SKIP=1): %v", err)
	}
	tb.Fatalf("%v (set STRATA_ALLOW_SKIP=1 to skip instead)", err)
}

// ForTest starts a fresh server for the test: it calls Require, runs Init
// with BaseDir set to a new t.TempDir() (unless opts.BaseDir is set), and
// registers a cleanup that stops the server. If the test failed, the tail
// of the server log is logged at cleanup.
func ForTest(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Flavor == flavor.MySQL {
		RequireMySQL(tb)
	} else {
		Require(tb)
	}
	if opts.BaseDir == "" {
		opts.BaseDir = tb.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Init(ctx, opts)
	if err != nil {
		tb.Fatalf("testdb: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("testdb: tail of %s:\n%s", s.LogPath, s.LogTail(40))
		}
		if err := s.Stop(); err != nil {
			tb.Errorf("testdb: stop: %v", err)
		}
	})
	return s
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomPassword returns a random 24-character hex password.
func RandomPassword() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Init creates a new datadir at opts.BaseDir/data with mariadb-install-db,
// starts mariadbd on it, waits until it answers and sets up root access:
// 'root'@'localhost', 'root'@'127.0.0.1', 'root'@'::1' and 'root'@'%' all get
// ALL PRIVILEGES WITH GRANT OPTION and the password opts.Password (a random
// one if empty). The setup statements are not written to the binary log, so a
// fresh server has an empty @@gtid_binlog_pos.
func Init(ctx context.Context, opts Options) (*Server, error) {
	if opts.BaseDir == "" {
		return nil, errors.New("testdb: Options.BaseDir is required")
	}
	base, err := filepath.Abs(opts.BaseDir)
	if err != nil {
		return nil, err
	}
	opts.BaseDir = base
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	datadir := filepath.Join(base, "data")
	if entries, err := os.ReadDir(datadir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("testdb: %s already exists and is not empty (use StartExisting)", datadir)
	}
	if opts.Flavor == flavor.MySQL {
		if err := initMySQL(ctx, base, datadir, opts); err != nil {
			return nil, err
		}
		return startWithRoot(ctx, datadir, opts)
	}
	installDB, err := Binary("mariadb-install-db")
	if err != nil {
		return nil, fmt.Errorf("testdb: %w; run `make deps`", err)
	}

	args := []string{
		"--no-defaults",
		"--datadir=" + datadir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if _, err := exec.LookPath("mariadbd"); err != nil {
		// Let mariadb-install-db find mariadbd when /usr/sbin is not on PATH.
		if mariadbd, err := Binary("mariadbd"); err == nil {
			args = append(args, "--basedir="+installBaseDir(mariadbd))
		}
	}
	// A private tmpdir: concurrent bootstraps sharing /tmp collide on
	// their temporary table names (#sql-temptable-...) and fail.
	tmpDir, err := os.MkdirTemp("", "sdbinit")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmpDir)
	args = append(args, "--tmpdir="+tmpDir)
	args = append(args, opts.InitArgs...)
	logPath := filepath.Join(base, "install-db.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, installDB, args...)
	cmd.Dir = base
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	runErr := cmd.Run()
	logFile.Close()
	if runErr != nil {
		return nil, fmt.Errorf("testdb: %s failed: %v\n%s",
			filepath.Base(installDB), runErr, logSummary(logPath, 0, 30))
	}
	return startWithRoot(ctx, datadir, opts)
}

// initMySQL creates a MySQL datadir with mysqld --initialize-insecure
// (root@localhost without a password).
func initMySQL(ctx context.Context, base, datadir string, opts Options) error {
	mysqld, err := MySQLBinary("mysqld")
	if err != nil {
		return fmt.Errorf("testdb: %w", err)
	}
	args := []string{"--no-defaults", "--initialize-insecure", "--user=root", "--datadir=" + datadir,
		"--innodb-buffer-pool-size=" + DefaultInnoDBBufferPool}
	args = append(args, opts.InitArgs...)
	logPath := filepath.Join(base, "initialize.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, mysqld, args...)
	cmd.Dir = base
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	runErr := cmd.Run()
	logFile.Close()
	if runErr != nil {
		return fmt.Errorf("testdb: mysqld --initialize-insecure failed: %v\n%s", runErr, logSummary(logPath, 0, 30))
	}
	return nil
}

// startWithRoot starts the server on a new datadir and gives root its
// password.
func startWithRoot(ctx context.Context, datadir string, opts Options) (*Server, error) {
	password := opts.Password
	if password == "" {
		password = RandomPassword()
	}
	opts.Password = ""
	s, err := start(ctx, datadir, opts)
	if err != nil {
		return nil, err
	}
	if err := s.setupRoot(ctx, password); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("testdb: setting up root access: %w", err)
	}
	s.Password = password
	return s, nil
}

// installBaseDir returns the installation prefix for a mariadbd binary
// (/usr for /usr/sbin/mariadbd).
func installBaseDir(mariadbd string) string {
	return filepath.Dir(filepath.Dir(mariadbd))
}

// StartExisting starts mariadbd on an existing datadir, for example one
// restored from a backup or left behind by a stopped or killed server. The
// root password is the one stored in the datadir and must be given in
// opts.Password. Log files go to opts.BaseDir, which defaults to the parent
// of datadir.
func StartExisting(ctx context.Context, datadir string, opts Options) (*Server, error) {
	abs, err := filepath.Abs(datadir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("testdb: datadir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("testdb: datadir %s is not a directory", abs)
	}
	if opts.BaseDir == "" {
		opts.BaseDir = filepath.Dir(abs)
	}
	if opts.BaseDir, err = filepath.Abs(opts.BaseDir); err != nil {
		return nil, err
	}
	s, err := start(ctx, abs, opts)
	if err != nil {
		return nil, err
	}
	// Check that the credentials work, so callers get a clear error early.
	db, err := s.DB("")
	if err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("testdb: server on %s started but login as root failed: %w", abs, err)
	}
	db.Close()
	return s, nil
}

// start launches mariadbd on datadir and waits until it answers on its
// socket. It retries with a new port if a randomly chosen port was taken
// in the meantime. s.Password is set to opts.Password.
func start(ctx context.Context, datadir string, opts Options) (*Server, error) {
	const attempts = 3
	var lastErr error
	for i := 0; i < attempts; i++ {
		s, err := startOnce(ctx, datadir, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		var be *bindError
		if opts.Port != 0 || !errors.As(err, &be) || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// bindError marks a startup failure caused by the TCP port being in use.
type bindError struct{ err error }

func (e *bindError) Error() string { return e.err.Error() }
func (e *bindError) Unwrap() error { return e.err }

func startOnce(ctx context.Context, datadir string, opts Options) (*Server, error) {
	mariadbd, err := serverBinary(opts.Flavor)
	if err != nil {
		return nil, err
	}
	port := opts.Port
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, fmt.Errorf("testdb: picking a free port: %w", err)
		}
	}
	serverID := opts.ServerID
	if serverID == 0 {
		serverID = DefaultServerID
	}
	pool := opts.InnoDBBufferPool
	if pool == "" {
		pool = DefaultInnoDBBufferPool
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}

	sockDir, err := shortTempDir()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Datadir:  datadir,
		Socket:   filepath.Join(sockDir, "mysqld.sock"),
		Port:     port,
		User:     "root",
		Password: opts.Password,
		ServerID: serverID,
		LogPath:  filepath.Join(opts.BaseDir, filepath.Base(datadir)+".err"),
		sockDir:  sockDir,
		done:     make(chan struct{}),
		Flavor:   flavor.MariaDB,
	}
	if opts.Flavor == flavor.MySQL {
		s.Flavor = flavor.MySQL
	}

	args := []string{"--no-defaults"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	args = append(args,
		"--datadir="+datadir,
		"--socket="+s.Socket,
		"--pid-file="+filepath.Join(sockDir, "mysqld.pid"),
		"--tmpdir="+sockDir,
		"--port="+strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--server-id="+strconv.Itoa(serverID),
		// Relative names resolve inside the datadir and, unlike the
		// hostname-based defaults, survive moving or restoring the datadir.
		"--log-bin=binlog",
		"--relay-log=relay-bin",
		"--binlog-format=ROW",
		"--innodb-flush-log-at-trx-commit=1",
		"--sync-binlog=1",
		"--skip-name-resolve",
		"--character-set-server=utf8mb4",
		"--innodb-buffer-pool-size="+pool,
	)
	if s.Flavor == flavor.MySQL {
		args = append(args, "--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--log-replica-updates=ON",
			"--secure-file-priv=", "--mysqlx=OFF", "--skip-replica-start")
	} else {
		args = append(args, "--gtid-strict-mode=ON", "--log-slave-updates=ON", "--collation-server=utf8mb4_general_ci")
	}
	args = append(args, opts.ExtraArgs...)

	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		os.RemoveAll(sockDir)
		return nil, err
	}
	var logOffset int64
	if fi, err := logFile.Stat(); err == nil {
		logOffset = fi.Size()
	}
	fmt.Fprintf(logFile, "=== testdb: %s %s\n", mariadbd, strings.Join(args, " "))

	// Without --log-error mariadbd logs to stderr, which we send to the log
	// file and, optionally, to opts.Stdout.
	cmd := exec.Command(mariadbd, args...)
	cmd.Dir = datadir
	if opts.Stdout != nil {
		w := io.MultiWriter(logFile, opts.Stdout)
		cmd.Stdout, cmd.Stderr = w, w
	} else {
		cmd.Stdout, cmd.Stderr = logFile, logFile
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Kill the server if this process dies without stopping it.
		Pdeathsig: syscall.SIGKILL,
	}
	s.cmd = cmd

	// Pdeathsig fires when the OS thread that forked the child exits, so
	// fork from a goroutine locked to its thread that lives until the child
	// has exited.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	if err := <-started; err != nil {
		logFile.Close()
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("testdb: starting mariadbd: %w", err)
	}

	if err := s.waitReady(ctx, timeout); err != nil {
		s.Kill()
		tail := logSummary(s.LogPath, logOffset, 30)
		err = fmt.Errorf("testdb: mariadbd on %s (port %d) did not come up: %w\n%s",
			datadir, port, err, tail)
		if strings.Contains(tail, "Address already in use") || strings.Contains(tail, "Bind on TCP/IP port") {
			return nil, &bindError{err}
		}
		return nil, err
	}
	return s, nil
}

// serverBinary is mariadbd, or the MySQL chroot's mysqld wrapper.
func serverBinary(f flavor.Name) (string, error) {
	if f == flavor.MySQL {
		p, err := MySQLBinary("mysqld")
		if err != nil {
			return "", fmt.Errorf("testdb: %w", err)
		}
		return p, nil
	}
	p, err := Binary("mariadbd")
	if err != nil {
		return "", fmt.Errorf("testdb: %w; run `make deps`", err)
	}
	return p, nil
}

// shortTempDir makes a directory whose path is short enough for a Unix
// socket (sun_path is limited to ~107 bytes).
func shortTempDir() (string, error) {
	dir, err := os.MkdirTemp("", "sdb")
	if err == nil && len(dir) < 80 {
		return dir, nil
	}
	if err == nil {
		os.Remove(dir)
	}
	return os.MkdirTemp("/tmp", "sdb")
}

// waitReady polls the Unix socket until the server answers the MySQL
// protocol (an authentication error also counts as an answer), the process
// exits, or the timeout expires.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := s.config("", true)
	cfg.Timeout = 2 * time.Second
	cfg.Logger = nopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	var lastErr error
	start := time.Now()
	for {
		select {
		case <-s.done:
			return fmt.Errorf("mariadbd exited: %v", s.waitErr)
		default:
		}
		// Every 10 ms while a server usually starts, then every 100 ms.
		poll := 100 * time.Millisecond
		if time.Since(start) < 5*time.Second {
			poll = 10 * time.Millisecond
		}
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := connector.Connect(cctx)
		ccancel()
		if err == nil {
			conn.Close()
			return nil
		}
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			return nil // the server answered; credentials are checked later
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %v waiting for %s (last error: %v)", timeout, s.Socket, lastErr)
		case <-s.done:
			return fmt.Errorf("mariadbd exited: %v", s.waitErr)
		case <-time.After(poll):
		}
	}
}

type nopLogger struct{}

func (nopLogger) Print(...any) {}

// setupRoot gives root the password on all local hosts plus '%', and drops
// other root and anonymous accounts. It connects over the socket with the
// empty password that mariadb-install-db leaves.
func (s *Server) setupRoot(ctx context.Context, password string) error {
	connector, err := mysql.NewConnector(s.config("", true))
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil {
		return err
	}
	keep := []string{"localhost", "127.0.0.1", "::1", "%"}
	pw := quoteString(password)
	for _, host := range keep {
		acct := "'root'@" + quoteString(host)
		for _, q := range []string{
			"CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY " + pw,
			"ALTER USER " + acct + " IDENTIFIED BY " + pw,
			"GRANT ALL PRIVILEGES ON *.* TO " + acct + " WITH GRANT OPTION",
		} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", strings.Replace(q, pw, "'***'", 1), err)
			}
		}
	}
	rows, err := conn.QueryContext(ctx, "SELECT User, Host FROM mysql.user WHERE User = '' OR (User = 'root' AND Host NOT IN ('localhost','127.0.0.1','::1','%'))")
	if err != nil {
		return err
	}
	var drop []string
	for rows.Next() {
		var u, h string
		if err := rows.Scan(&u, &h); err != nil {
			rows.Close()
			return err
		}
		drop = append(drop, quoteString(u)+"@"+quoteString(h))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, acct := range drop {
		if _, err := conn.ExecContext(ctx, "DROP USER IF EXISTS "+acct); err != nil {
			return fmt.Errorf("DROP USER %s: %w", acct, err)
		}
	}
	_, err = conn.ExecContext(ctx, "FLUSH PRIVILEGES")
	return err
}

// quoteString returns s as a single-quoted SQL string literal.
func quoteString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)
	return "'" + r.Replace(s) + "'"
}

// config returns a driver config for db, over the socket or TCP.
func (s *Server) config(db string, socket bool) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = s.User
	cfg.Passwd = s.Password
	if socket {
		cfg.Net = "unix"
		cfg.Addr = s.Socket
	} else {
		cfg.Net = "tcp"
		cfg.Addr = s.Addr()
	}
	cfg.DBName = db
	cfg.ParseTime = true
	cfg.MultiStatements = true
	_ = cfg.Apply(mysql.Charset("utf8mb4", "utf8mb4_general_ci"))
	return cfg
}

// Addr returns the server's TCP address, "127.0.0.1:<port>".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// DSN returns a go-sql-driver/mysql DSN for database db ("" for none) that
// connects as root over TCP to 127.0.0.1 with charset utf8mb4,
// parseTime=true and multiStatements=true.
func (s *Server) DSN(db string) string {
	return s.config(db, false).FormatDSN()
}

// SocketDSN is like DSN but connects over the Unix socket.
func (s *Server) SocketDSN(db string) string {
	return s.config(db, true).FormatDSN()
}

// DB opens a connection pool for database db (see DSN) and pings it.
func (s *Server) DB(db string) (*sql.DB, error) {
	pool, err := sql.Open("mysql", s.DSN(db))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// PID returns the process id of mariadbd (also its process group id).
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Done returns a channel that is closed when the mariadbd process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop shuts the server down gracefully: SIGTERM to its process group, up
// to StopTimeout (60s) to exit, then SIGKILL. It is idempotent and safe to
// call after Kill. It returns an error if the server had to be killed or
// had already exited with a failure status before Stop was called.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	defer os.RemoveAll(s.sockDir)

	select {
	case <-s.done:
		if s.waitErr != nil {
			s.stopErr = fmt.Errorf("mariadbd had already exited: %v\n--- log tail ---\n%s", s.waitErr, s.LogTail(20))
		}
		return s.stopErr
	default:
	}
	s.signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.waitErr != nil {
			s.stopErr = fmt.Errorf("mariadbd shutdown: %v\n--- log tail ---\n%s", s.waitErr, s.LogTail(20))
		}
	case <-time.After(StopTimeout):
		s.signal(syscall.SIGKILL)
		<-s.done
		s.stopErr = fmt.Errorf("mariadbd did not shut down within %v; killed", StopTimeout)
	}
	return s.stopErr
}

// Kill sends SIGKILL to the server's process group and waits for it to
// exit, simulating a crash: the datadir is left as is and can be started
// again with StartExisting. It is a no-op if the server is already stopped.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	s.signal(syscall.SIGKILL)
	<-s.done
	os.RemoveAll(s.sockDir)
}

// signal sends sig to the server's process group, falling back to the
// process itself.
func (s *Server) signal(sig syscall.Signal) {
	pid := s.PID()
	if pid <= 0 {
		return
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		_ = syscall.Kill(pid, sig)
	}
}

// LogTail returns the last n lines of the server log.
func (s *Server) LogTail(n int) string {
	return tailFile(s.LogPath, n)
}

// logSummary returns the lines of the log at path (after offset) that
// mention an error, followed by its last n lines.
func logSummary(path string, offset int64, n int) string {
	var errs []string
	if b, err := os.ReadFile(path); err == nil && int64(len(b)) >= offset {
		for _, line := range strings.Split(string(b[offset:]), "\n") {
			if strings.Contains(line, "ERROR") && len(errs) < 20 {
				errs = append(errs, line)
			}
		}
	}
	var sb strings.Builder
	if len(errs) > 0 {
		fmt.Fprintf(&sb, "--- errors in %s ---\n%s\n", path, strings.Join(errs, "\n"))
	}
	fmt.Fprintf(&sb, "--- tail of %s ---\n%s", path, tailFrom(path, offset, n))
	return sb.String()
}

// tailFile returns the last n lines of the file at path (or an error note).
func tailFile(path string, n int) string {
	return tailFrom(path, 0, n)
}

// tailFrom returns the last n lines of the file at path, ignoring the
// first offset bytes.
func tailFrom(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	const maxTail = 16 << 10
	start := fi.Size() - maxTail
	if start < offset {
		start = offset
	}
	if start < 0 {
		start = 0
	}
	buf := make([]byte, fi.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
