package perf

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// env is one benchmark run's world: a source server on a copy of the data
// set, a Temporal dev server, and `strata worker` and `strata agent`
// processes with a local repository.
type env struct {
	b        *testing.B
	ctx      context.Context
	dir      string
	bin      string // the strata binary
	cfgPath  string
	repoRoot string
	src      *testdb.Server
	password string
	pool     string // the source's buffer pool
	dev      *testsuite.DevServer
	tc       client.Client
	worker   *exec.Cmd
	agent    *exec.Cmd
	agentLog string
	metrics  string // the agent's /metrics URL
	// lastBackup is the id of each instance's newest backup.
	lastBackup map[string]string
	tools      struct{ mariabackup, mbstream, mariadbBinlog, mariadb, sysbench, zstd string }
}

func tool(b *testing.B, name string) string {
	for _, d := range []string{"", "/usr/sbin", "/usr/bin", "/usr/local/bin"} {
		p := name
		if d != "" {
			p = filepath.Join(d, name)
		}
		if lp, err := exec.LookPath(p); err == nil {
			return lp
		}
	}
	b.Fatalf("%s not found: `make bench` installs it (scripts/setup.sh bench)", name)
	return ""
}

// newEnv copies the data set and starts everything.
// extra is more of the config (top-level blocks).
func newEnv(b *testing.B, ctx context.Context, dataset, pool, replayPool, extra string) *env {
	e := &env{b: b, ctx: ctx, dir: b.TempDir(), pool: pool, lastBackup: map[string]string{}}
	e.tools.mariabackup = tool(b, "mariabackup")
	e.tools.mbstream = tool(b, "mbstream")
	e.tools.mariadbBinlog = tool(b, "mariadb-binlog")
	e.tools.mariadb = tool(b, "mariadb")
	e.tools.sysbench = tool(b, "sysbench")
	e.tools.zstd = tool(b, "zstd")
	pw, err := os.ReadFile(filepath.Join(dataset, "password"))
	if err != nil {
		b.Fatalf("data set %s is incomplete (%v): run scripts/bench-dataset.sh", dataset, err)
	}
	e.password = strings.TrimSpace(string(pw))
	datadir := filepath.Join(e.dir, "src", "data")
	must(b, os.MkdirAll(filepath.Dir(datadir), 0o700))
	run(b, "cp", "-a", filepath.Join(dataset, "data"), datadir)
	e.src, err = testdb.StartExisting(ctx, datadir, testdb.Options{Password: e.password, InnoDBBufferPool: pool,
		ExtraArgs: []string{"--innodb-log-file-size=512M", "--max-connections=500"}})
	if err != nil {
		b.Fatalf("start the source server: %v", err)
	}
	b.Cleanup(func() { _ = e.src.Stop() })

	e.bin = filepath.Join(e.dir, "strata")
	build := exec.Command("go", "build", "-o", e.bin, "./cmd/strata")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	temporal := os.Getenv("STRATA_TEMPORAL_BIN")
	if temporal == "" {
		temporal = filepath.Join(repoRoot(), "bin", "temporal")
	}
	e.dev, err = testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  temporal,
		ExtraArgs:     workflows.SearchAttributeArgs(),
		LogLevel:      "error",
		ClientOptions: &client.Options{Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))},
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
	if err != nil {
		b.Fatalf("start the Temporal dev server (%s; `make deps` builds it): %v", temporal, err)
	}
	b.Cleanup(func() { _ = e.dev.Stop() })
	e.tc = e.dev.Client()

	mport, err := testdb.FreePort()
	must(b, err)
	e.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	e.repoRoot = filepath.Join(e.dir, "repo")
	cfg := fmt.Sprintf(`temporal:
  address: %s
storage:
  type: local
  local:
    root: %s
agent:
  scratch_dir: %s
metrics:
  agent_listen: 127.0.0.1:%d
  listen: ""
%s
instances:
`, e.dev.FrontendHostPort(), e.repoRoot, filepath.Join(e.dir, "scratch"), mport, extra)
	// db1 has the default settings; dbz1 and dbz3 are the same server with
	// zstd level 1 and 3.
	for _, in := range []struct{ id, backup string }{{"db1", "{}, archive: {replay_memory: " + replayPool + "iB}"}, {"dbz1", "{compression: zstd, compression_level: 1}"}, {"dbz3", "{compression: zstd, compression_level: 3}"}} {
		cfg += fmt.Sprintf("  - {id: %s, host: h1, connect: {address: \"127.0.0.1:%d\", user: root, password_env: STRATA_BENCH_PASSWORD}, datadir: %s, backup: %s}\n",
			in.id, e.src.Port, datadir, in.backup)
	}
	e.cfgPath = filepath.Join(e.dir, "strata.yaml")
	must(b, os.WriteFile(e.cfgPath, []byte(cfg), 0o600))
	must(b, os.MkdirAll(filepath.Join(e.dir, "scratch"), 0o700))

	e.worker = e.startProcess("worker.log", "worker", "--log-level", "warn")
	e.agentLog = filepath.Join(e.dir, "agent.log")
	e.agent = e.startProcess("agent.log", "agent", "--host", "h1", "--log-level", "info")
	e.waitMetrics()
	return e
}

func (e *env) startProcess(logName string, args ...string) *exec.Cmd {
	f, err := os.Create(filepath.Join(e.dir, logName))
	must(e.b, err)
	cmd := exec.Command(e.bin, append(args, "--config", e.cfgPath)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "STRATA_BENCH_PASSWORD="+e.password)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(e.b, cmd.Start())
	e.b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		f.Close()
	})
	return cmd
}

func (e *env) waitMetrics() {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(e.metrics); err == nil {
			r.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.b.Fatalf("the agent's metrics endpoint %s did not answer; see %s", e.metrics, e.agentLog)
}

// cli runs `strata ARGS --config CFG` and returns its stdout.
func (e *env) cli(args ...string) ([]byte, error) {
	cmd := exec.CommandContext(e.ctx, e.bin, append(args, "--config", e.cfgPath)...)
	cmd.Env = append(os.Environ(), "STRATA_BENCH_PASSWORD="+e.password)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("strata %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes(), nil
}

// sql runs statements on the source and returns the first column of the
// last result's first row.
func (e *env) sql(q string) string {
	db, err := e.src.DB("")
	must(e.b, err)
	defer db.Close()
	var v string
	if err := db.QueryRowContext(e.ctx, q).Scan(&v); err != nil {
		e.b.Fatalf("%s: %v", q, err)
	}
	return v
}

// ---- process accounting

// usage is what /proc says of a process: CPU of its own and of its waited
// children, and its peak resident memory.
type usage struct {
	self, children time.Duration
	peakRSS        int64
}

func procUsage(pid int) usage {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	tick := func(i int) time.Duration {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * time.Second / 100 // USER_HZ
	}
	u := usage{self: tick(11) + tick(12), children: tick(13) + tick(14)}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				u.peakRSS = n << 10
			}
		}
	}
	return u
}

// resetPeak resets a process's peak RSS (VmHWM) to its current RSS.
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// meter measures the agent, the worker and the source server around one
// operation.
type meter struct {
	e                         *env
	agent, worker, src        usage
	start                     time.Time
	agentPID, workerPID, sPID int
}

func (e *env) meter() *meter {
	m := &meter{e: e, agentPID: e.agent.Process.Pid, workerPID: e.worker.Process.Pid, sPID: e.src.PID()}
	resetPeak(m.agentPID)
	m.agent, m.worker, m.src = procUsage(m.agentPID), procUsage(m.workerPID), procUsage(m.sPID)
	m.start = time.Now()
	return m
}

// stop records the operation's wall time and the CPU each process spent
// (the agent's includes its waited children, the backup tools), and the
// agent's peak memory.
func (m *meter) stop(s *sample) {
	s.Seconds = time.Since(m.start).Seconds()
	a, w, src := procUsage(m.agentPID), procUsage(m.workerPID), procUsage(m.sPID)
	s.AgentCPU = (a.self - m.agent.self).Seconds()
	s.ToolCPU = (a.children - m.agent.children).Seconds()
	s.WorkerCPU = (w.self - m.worker.self).Seconds()
	s.ServerCPU = (src.self - m.src.self).Seconds()
	s.CPU = s.AgentCPU + s.ToolCPU + s.WorkerCPU
	s.PeakMiB = float64(a.peakRSS) / (1 << 20)
}

// shell runs a peer pipeline under bash -o pipefail and measures its wall
// time, the CPU of the whole pipeline and the largest peak memory of its
// processes; the source server's CPU is measured around it.
func (e *env) shell(script string, s *sample) {
	sPID := e.src.PID()
	src0 := procUsage(sPID)
	cmd := exec.CommandContext(e.ctx, "bash", "-o", "pipefail", "-c", script)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		e.b.Fatalf("peer: %s: %v\n%s", script, err, tail(errb.String(), 20))
	}
	s.Seconds = time.Since(t0).Seconds()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	s.ToolCPU = time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime)).Seconds()
	s.CPU = s.ToolCPU
	s.PeakMiB = float64(ru.Maxrss) / 1024
	s.ServerCPU = (procUsage(sPID).self - src0.self).Seconds()
}

// ---- workflow facts

// historyEvents counts the events of a closed workflow, and returns its
// close time.
func (e *env) history(id string) (int, time.Time) {
	d, err := e.tc.DescribeWorkflowExecution(e.ctx, id, "")
	if err != nil {
		e.b.Fatalf("describe %s: %v", id, err)
	}
	n := 0
	it := e.tc.GetWorkflowHistory(e.ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			e.b.Fatalf("history of %s: %v", id, err)
		}
		n++
	}
	return n, d.WorkflowExecutionInfo.GetCloseTime().AsTime()
}

// manifestWritten is when the backup's manifest file was written.
func (e *env) manifestWritten(instance, id string) time.Time {
	st, err := os.Stat(filepath.Join(e.repoRoot, instance, "backups", id, "manifest.json"))
	if err != nil {
		e.b.Fatalf("manifest of %s: %v", id, err)
	}
	return st.ModTime()
}

// archiveLag reads the agent's strata_archive_lag_seconds of db1.
func (e *env) archiveLag() (float64, bool) {
	r, err := http.Get(e.metrics)
	if err != nil {
		return 0, false
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, `strata_archive_lag_seconds{instance="db1"}`) {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// ---- write load

// sysbenchLoad runs sysbench oltp_write_only with 4 threads against the
// source for d and returns, per second, the largest latency it saw (ms).
type load struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
	t0   time.Time
}

func (e *env) startLoad(threads int, d time.Duration, tables, rows int) *load {
	// Line-buffered, so that a load stopped early has printed every second.
	cmd := exec.CommandContext(e.ctx, "stdbuf", "-oL", e.tools.sysbench, "oltp_write_only", "--db-driver=mysql",
		"--mysql-host=127.0.0.1", "--mysql-port="+strconv.Itoa(e.src.Port), "--mysql-user=root",
		"--mysql-password="+e.password, "--mysql-db=sbtest", "--tables="+strconv.Itoa(tables),
		"--table-size="+strconv.Itoa(rows), "--threads="+strconv.Itoa(threads),
		"--time="+strconv.Itoa(int(d.Seconds())), "--report-interval=1", "--percentile=100",
		"--rand-type=uniform", "run")
	l := &load{cmd: cmd, out: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = l.out, l.out
	must(e.b, cmd.Start())
	l.t0 = time.Now()
	go func() { l.done <- cmd.Wait() }()
	return l
}

var reportLine = regexp.MustCompile(`^\[ *(\d+)s \].* tps: ([0-9.]+) .*lat \(ms,100%\): ([0-9.]+)`)

// wait waits for the load to end and returns its per-second reports: the
// second's end (from the load's start), tps and max latency.
func (l *load) wait(b *testing.B) []second {
	if err := <-l.done; err != nil {
		b.Fatalf("sysbench: %v\n%s", err, tail(l.out.String(), 20))
	}
	var s []second
	for _, line := range strings.Split(l.out.String(), "\n") {
		m := reportLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, _ := strconv.Atoi(m[1])
		tps, _ := strconv.ParseFloat(m[2], 64)
		lat, _ := strconv.ParseFloat(m[3], 64)
		s = append(s, second{End: time.Duration(at) * time.Second, TPS: tps, MaxMS: lat})
	}
	return s
}

type second struct {
	End   time.Duration
	TPS   float64
	MaxMS float64
}

// maxIn is the largest per-second max latency of the seconds overlapping
// [from, to] (offsets from the load's start).
func maxIn(secs []second, from, to time.Duration) float64 {
	m := 0.0
	for _, s := range secs {
		if s.End > from && s.End-time.Second < to && s.MaxMS > m {
			m = s.MaxMS
		}
	}
	return m
}

// ---- small helpers

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

func run(b *testing.B, name string, args ...string) string {
	b.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 20))
	}
	return string(out)
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func fileSize(b *testing.B, p string) int64 {
	st, err := os.Stat(p)
	must(b, err)
	return st.Size()
}
