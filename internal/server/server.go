// Package server starts a MariaDB/MySQL server on a restored datadir, detached
// from the agent so that it keeps running after the activity (and the agent)
// ends, and waits until it answers.
package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/mysqlx"
)

// Options for Start.
type Options struct {
	Binary string // mariadbd/mysqld; "" = looked up for Flavor
	// Flavor is the server's flavor ("" = MariaDB): MySQL's server is
	// looked up as mysqld only and started with the options a restored
	// MySQL datadir needs (FlavorArgs).
	Flavor      flavor.Name
	Datadir     string
	Port        int    // 0 = no TCP listener (socket only)
	BindAddress string // default 127.0.0.1
	// Endpoint credentials used to check that the server answers; an
	// "access denied" answer also counts as answering.
	User, Password string
	ReadyTimeout   time.Duration // default 5m
	// Extra server options, appended last.
	Extra []string
	// Tick is called while waiting, e.g. to heartbeat.
	Tick func()
	// PrivateSocket puts the socket in a new directory of mode 0700 that
	// only the agent's user can enter (removed by Stop), for a server that
	// must not be reachable by other local users, such as the replay
	// server, which runs without grant tables. It requires Port 0.
	PrivateSocket bool
}

// Started describes a running server.
type Started struct {
	PID      int
	Port     int
	Socket   string
	ErrorLog string
	Version  string
	// SocketDir is the private socket directory (PrivateSocket), removed by Stop.
	SocketDir string
}

// ErrPortInUse is wrapped when the requested port is taken.
var ErrPortInUse = errors.New("port in use")

// ErrNoBinary is returned (wrapped) by Start when this host has no server
// binary: the host's installation, not the datadir, is at fault.
var ErrNoBinary = errors.New("no server binary")

// ErrNotReady is returned (wrapped) by Start when the server kept running
// but did not answer within the ready timeout: a slow or loaded host as
// much as a bad datadir, unlike a server that exits during start-up.
var ErrNotReady = errors.New("server did not answer")

// FindBinary locates mariadbd (or mysqld).
func FindBinary(configured string) (string, error) {
	return FindBinaryFor("", configured)
}

// FindBinaryFor locates the server of flavor f: mysqld for MySQL (a
// mariadbd cannot start a MySQL datadir), else mariadbd, then mysqld.
func FindBinaryFor(f flavor.Name, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	names := []string{"mariadbd", "mysqld"}
	if f == flavor.MySQL {
		names = []string{"mysqld"}
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec"} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	if f == flavor.MySQL {
		return "", fmt.Errorf("%w: mysqld is not installed on this agent (install the MySQL server, or set tools.mysqld)", ErrNoBinary)
	}
	return "", fmt.Errorf("%w: neither mariadbd nor mysqld is installed on this agent (install mariadb-server, or set tools.mariadbd)", ErrNoBinary)
}

// FlavorArgs are the server options Start adds for a flavor. A MySQL
// datadir restored from a GTID source starts with GTIDs on (a server
// started with gtid_mode OFF could not continue the source's history
// with GTIDs); without the X plugin, whose port would collide with the
// source's on the same host; without starting the source's replication
// channels; and with file import/export off (the compiled-in
// secure_file_priv directory may not exist, and the server refuses to
// start then).
func FlavorArgs(f flavor.Name) []string {
	if f != flavor.MySQL {
		return nil
	}
	return []string{"--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--mysqlx=OFF",
		"--skip-replica-start", "--secure-file-priv=NULL"}
}

// socketPath returns a unix socket path short enough for sun_path.
func socketPath(datadir string, port int) string {
	s := filepath.Join(filepath.Dir(datadir), filepath.Base(datadir)+".sock")
	if len(s) < 100 {
		return s
	}
	return filepath.Join(os.TempDir(), "strata-"+strconv.Itoa(port)+".sock")
}

// Start launches the server in its own session and waits until it answers.
// On failure it stops the server and returns the tail of its error log.
func Start(ctx context.Context, o Options) (*Started, error) {
	bin, err := FindBinaryFor(o.Flavor, o.Binary)
	if err != nil {
		return nil, err
	}
	if o.BindAddress == "" {
		o.BindAddress = "127.0.0.1"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("port %d is out of range", o.Port)
	}
	if o.Port > 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(o.BindAddress, strconv.Itoa(o.Port)))
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d is already taken (%v); choose another --port", ErrPortInUse, o.BindAddress, o.Port, err)
		}
		_ = l.Close()
	}
	st := &Started{Port: o.Port, Socket: socketPath(o.Datadir, o.Port), ErrorLog: filepath.Join(o.Datadir, "strata-server.err")}
	if o.PrivateSocket {
		if o.Port != 0 {
			return nil, errors.New("a server with a private socket listens on no port")
		}
		// MkdirTemp creates the directory 0700; the short base keeps the
		// path within sun_path.
		dir, err := os.MkdirTemp("", "strata-sock-")
		if err != nil {
			return nil, fmt.Errorf("create private socket dir: %w", err)
		}
		st.SocketDir, st.Socket = dir, filepath.Join(dir, "mysqld.sock")
	}
	args := []string{"--no-defaults", "--datadir=" + o.Datadir, "--socket=" + st.Socket,
		"--pid-file=" + filepath.Join(o.Datadir, "strata-server.pid"), "--log-error=" + st.ErrorLog}
	if o.Port > 0 {
		args = append(args, "--port="+strconv.Itoa(o.Port), "--bind-address="+o.BindAddress)
	} else {
		args = append(args, "--skip-networking", "--port=0")
	}
	if u, err := user.Current(); err == nil {
		args = append(args, "--user="+u.Username)
	}
	args = append(args, FlavorArgs(o.Flavor)...)
	args = append(args, o.Extra...)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	if err := cmd.Start(); err != nil {
		removeSocketDir(st)
		return nil, fmt.Errorf("start %s: %w (%w)", bin, err, ErrNoBinary)
	}
	st.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap; the server outlives us if we exit first

	// Check over TCP when there is a port: accounts are often defined for
	// 127.0.0.1 only; socket-only servers are checked on their socket.
	ep := mysqlx.Endpoint{Socket: st.Socket, User: o.User, Password: o.Password}
	if o.Port > 0 {
		ep = mysqlx.Endpoint{Address: net.JoinHostPort(o.BindAddress, strconv.Itoa(o.Port)), User: o.User, Password: o.Password}
	}
	if ep.User == "" {
		ep.User = "root"
	}
	started := time.Now()
	deadline := started.Add(o.ReadyTimeout)
	lastTick := started
	for {
		v, answered := probe(ctx, ep)
		if answered {
			st.Version = v
			return st, nil
		}
		select {
		case err := <-exited:
			removeSocketDir(st)
			return nil, fmt.Errorf("server exited during start-up (%v); last lines of %s:\n%s", err, st.ErrorLog, tailFile(st.ErrorLog, 20))
		case <-ctx.Done():
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
			removeSocketDir(st)
			return nil, ctx.Err()
		case <-time.After(readyPoll(time.Since(started))):
		}
		if o.Tick != nil && time.Since(lastTick) >= tickEvery {
			o.Tick()
			lastTick = time.Now()
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
			removeSocketDir(st)
			return nil, fmt.Errorf("%w within %s; last lines of %s:\n%s", ErrNotReady, o.ReadyTimeout, st.ErrorLog, tailFile(st.ErrorLog, 20))
		}
	}
}

// tickEvery is how often Options.Tick is called while Start waits.
const tickEvery = 500 * time.Millisecond

// readyPoll is how long Start waits, elapsed after the server was launched,
// before it asks again whether the server answers: a restored datadir's
// server usually answers within a fraction of a second, and a refused
// connection costs next to nothing, so it asks every 10ms for the first
// 5 s, then backs off to every 250ms for a long crash recovery.
func readyPoll(elapsed time.Duration) time.Duration {
	if elapsed < 5*time.Second {
		return 10 * time.Millisecond
	}
	return 250 * time.Millisecond
}

// probe reports whether the server answers, and its version when the
// credentials let us in.
func probe(ctx context.Context, ep mysqlx.Endpoint) (string, bool) {
	db, err := sql.Open("mysql", ep.DSN())
	if err != nil {
		return "", false
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var v string
	err = db.QueryRowContext(pctx, "SELECT VERSION()").Scan(&v)
	if err == nil {
		return v, true
	}
	var ce *mysqlx.ConnError
	if errors.As(mysqlx.Classify(ep, err), &ce) && ce.Kind == mysqlx.KindAuth {
		return "", true
	}
	return "", false
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func removeSocketDir(st *Started) {
	if st.SocketDir != "" {
		_ = os.RemoveAll(st.SocketDir)
	}
}

// Stop shuts a started server down cleanly (SIGTERM) and waits for it.
func Stop(ctx context.Context, st *Started) error {
	if st == nil || st.PID <= 0 {
		return nil
	}
	if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			removeSocketDir(st)
			return nil
		}
		return err
	}
	for {
		if err := syscall.Kill(st.PID, 0); errors.Is(err, syscall.ESRCH) {
			removeSocketDir(st)
			return nil
		}
		select {
		case <-ctx.Done():
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Running returns the pid of a server running on datadir: the process of
// the pid file Start writes, or any process whose command line names
// --datadir=datadir.
func Running(datadir string) (int, bool) {
	datadir = filepath.Clean(datadir)
	if b, err := os.ReadFile(filepath.Join(datadir, "strata-server.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && servesDatadir(pid, datadir) {
			return pid, true
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err == nil && pid > 0 && servesDatadir(pid, datadir) {
			return pid, true
		}
	}
	return 0, false
}

// servesDatadir reports whether process pid runs with --datadir=datadir.
func servesDatadir(pid int, datadir string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if v, ok := strings.CutPrefix(arg, "--datadir="); ok && filepath.Clean(v) == datadir {
			return true
		}
	}
	return false
}

// KillStale stops a server that Start left running on datadir (per its pid
// file), e.g. the replay server of an agent that was killed: SIGKILL, since
// whatever it was doing is being redone. Callers must know the server is
// their own (see replay.Run); a restore never kills a server.
func KillStale(ctx context.Context, datadir string) error {
	b, err := os.ReadFile(filepath.Join(datadir, "strata-server.pid"))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	if !servesDatadir(pid, filepath.Clean(datadir)) {
		return nil // not running, or the pid belongs to another process now
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 300; i++ {
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the server left running on %s (pid %d) does not exit", datadir, pid)
}
