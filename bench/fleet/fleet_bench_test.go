// Package fleet holds `make bench-fleet`: a fleet of simulated instances
// whose Temporal Schedules fire backups against one real `strata worker`
// process and a Temporal dev server, with simulated agents. The simulation
// (activities that sleep and heartbeat under the real activity names) lives
// here only: the end-to-end tests in tests/ run real agents.
package fleet

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/schedule"
	"github.com/strata-backup/strata/workflows"
)

var (
	nInstances = flag.Int("fleet.instances", 1000, "instances in the fleet")
	perHost    = flag.Int("fleet.per-host", 5, "instances per simulated agent host")
	agentMax   = flag.Int("fleet.agent-max", 2, "agent.max_concurrent: backups one agent runs at once")
	cron       = flag.String("fleet.cron", "* * * * *", "schedule.full of the fleet's policy")
	jitter     = flag.Duration("fleet.jitter", 55*time.Second, "schedule.jitter of the fleet's policy")
	limit      = flag.Int("fleet.limit", 100, "fleet.max_concurrent_backups (0: none)")
	runFor     = flag.Duration("fleet.duration", 3*time.Minute, "how long the schedules fire")
	backupFor  = flag.Duration("fleet.backup", 5*time.Second, "mean duration of a simulated backup (uniform in ±50%)")
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func temporalBinary(b *testing.B) string {
	p := os.Getenv("STRATA_TEMPORAL_BIN")
	if p == "" {
		p = filepath.Join(repoRoot(), "bin", "temporal")
	}
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("Temporal CLI not found at %s: run `make deps`", p)
	}
	return p
}

// fleetConfig is strata.yaml for n instances on hosts of perHost each,
// with the fleet's schedule policy and limit. The instances' connections
// and datadirs are never used: the agents are simulated.
func fleetConfig(addr, root string, n, perHost, agentMax, limit int, cron string, jitter time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, `temporal:
  address: %s
  agent_start_timeout: 30m
  heartbeat_timeout: 10s
storage:
  type: local
  local:
    root: %s
agent:
  max_concurrent: %d
fleet:
  max_concurrent_backups: %d
schedule:
  full: "%s"
  jitter: %s
  catchup_window: 1m
instances:
`, addr, root, agentMax, limit, cron, jitter)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {id: %s, host: %s, connect: {address: \"127.0.0.1:3306\", user: strata}, datadir: /nonexistent/%s}\n",
			instanceID(i), hostOf(i, n, perHost), instanceID(i))
	}
	return b.String()
}

func instanceID(i int) string { return fmt.Sprintf("db%04d", i+1) }

// hostOf deals the instances out to the hosts in turn, so that the
// instances of one host fire at offsets spread over the interval.
func hostOf(i, n, perHost int) string {
	return fmt.Sprintf("h%04d", i%max(1, (n+perHost-1)/perHost)+1)
}

// sim is the simulated agents' shared state: what they measured.
type sim struct {
	mean time.Duration

	running, maxRunning atomic.Int64
	mu                  sync.Mutex
	perHost             map[string]int
	maxPerHost          int
	scheduleToStart     []time.Duration // activity scheduled -> picked up by the agent
	fireToAgent         []time.Duration // scheduled run's start (its backup id) -> agent starts the backup
	done                int
}

// backup is the simulated Agent.Backup: it sleeps for the instance's
// duration, heartbeating BackupProgress every second as the real one does.
func (s *sim) backup(ctx context.Context, p activities.BackupParams) (*activities.BackupSummary, error) {
	info := activity.GetInfo(ctx)
	start := time.Now()
	s.enter(info, p.BackupID, start)
	defer s.leave(info)
	h := fnv.New32a()
	_, _ = h.Write([]byte(p.Instance + p.BackupID))
	d := s.mean/2 + time.Duration(h.Sum32()%1000)*s.mean/1000
	const rate = 200 << 20 // bytes/s of the simulated stream
	t := time.NewTicker(time.Second)
	defer t.Stop()
	end := time.NewTimer(d)
	defer end.Stop()
	activity.RecordHeartbeat(ctx, activities.BackupProgress{Phase: "starting"})
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			n := int64(time.Since(start).Seconds() * rate)
			activity.RecordHeartbeat(ctx, activities.BackupProgress{Phase: "streaming", Chunks: int(n >> 24), RawBytes: n, StoredBytes: n / 3})
		case <-end.C:
			n := int64(d.Seconds() * rate)
			activity.RecordHeartbeat(ctx, activities.BackupProgress{Phase: "writing manifest", Chunks: int(n >> 24), RawBytes: n, StoredBytes: n / 3})
			now := time.Now().UTC()
			return &activities.BackupSummary{Instance: p.Instance, BackupID: p.BackupID, Type: p.Type, ParentID: p.ParentID,
				Tool: "simulated", StartTime: start.UTC(), EndTime: now, ConsistentAt: now, RawSize: n, StoredSize: n / 3,
				Chunks: int(n >> 24), Compression: "zstd", UploadedBytes: n / 3, DurationSeconds: d.Seconds()}, nil
		}
	}
}

func (s *sim) enter(info activity.Info, backupID string, now time.Time) {
	r := s.running.Add(1)
	for {
		m := s.maxRunning.Load()
		if r <= m || s.maxRunning.CompareAndSwap(m, r) {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perHost[info.TaskQueue]++
	s.maxPerHost = max(s.maxPerHost, s.perHost[info.TaskQueue])
	if info.Attempt == 1 {
		s.scheduleToStart = append(s.scheduleToStart, info.StartedTime.Sub(info.ScheduledTime))
		// A scheduled run's backup id is its start time, to the second.
		if at, err := time.Parse(workflows.BackupIDFormat, backupID); err == nil {
			s.fireToAgent = append(s.fireToAgent, now.Sub(at))
		}
	}
}

func (s *sim) leave(info activity.Info) {
	s.running.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perHost[info.TaskQueue]--
	s.done++
}

// proc samples a process's CPU time and memory from /proc.
type proc struct{ pid int }

// cpu is the process's user+system CPU time.
func (p proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which is in parentheses).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// mem returns VmRSS and VmHWM (peak RSS) in bytes.
func (p proc) mem() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return rss, peak
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", r(at(0.5)), r(at(0.9)), r(at(0.99)), r(s[len(s)-1]), len(s))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// BenchmarkFleet runs the fleet once (-benchtime 1x) and prints what it
// measured.
func BenchmarkFleet(b *testing.B) {
	if *nInstances < 1 || *perHost < 1 || *runFor <= 0 {
		b.Fatal("-fleet.instances, -fleet.per-host and -fleet.duration must be positive")
	}
	for i := 0; i < b.N; i++ {
		runFleet(b)
	}
}

func runFleet(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), *runFor+30*time.Minute)
	defer cancel()
	dir := b.TempDir()

	// The strata binary, for the worker process.
	bin := filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-o", bin, "./cmd/strata")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  temporalBinary(b),
		ExtraArgs:     workflows.SearchAttributeArgs(),
		LogLevel:      "error",
		ClientOptions: &client.Options{Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))},
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
	if err != nil {
		b.Fatalf("start Temporal dev server: %v", err)
	}
	defer func() { _ = dev.Stop() }()
	c := dev.Client()

	cfgPath := filepath.Join(dir, "strata.yaml")
	yaml := fleetConfig(dev.FrontendHostPort(), filepath.Join(dir, "repo"), *nInstances, *perHost, *agentMax, *limit, *cron, *jitter)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	ns := cfg.Temporal.Namespace

	// One real worker process.
	var werr bytes.Buffer
	wk := exec.Command(bin, "worker", "--config", cfgPath, "--log-level", "error")
	wk.Stdout, wk.Stderr = io.Discard, &werr
	if err := wk.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = wk.Process.Kill(); _ = wk.Wait() }()
	wproc := proc{pid: wk.Process.Pid}

	// Simulated agents: the real activity name on each host's task queue.
	s := &sim{mean: *backupFor, perHost: map[string]int{}}
	hosts := map[string]bool{}
	for _, in := range cfg.Instances {
		hosts[in.Host] = true
	}
	for h := range hosts {
		w := worker.New(c, config.AgentTaskQueue(h), worker.Options{
			MaxConcurrentActivityExecutionSize: cfg.Agent.MaxConcurrentHeavy,
			MaxConcurrentActivityTaskPollers:   1,
		})
		w.RegisterActivityWithOptions(s.backup, activity.RegisterOptions{Name: "Backup"})
		if err := w.Start(); err != nil {
			b.Fatal(err)
		}
		defer w.Stop()
		// The pre-flight check runs on the agent's light queue: a server
		// that is never loaded passes at once.
		lw := worker.New(c, config.ArchiveTaskQueue(h), worker.Options{MaxConcurrentActivityTaskPollers: 1})
		lw.RegisterActivityWithOptions(func(context.Context, activities.PreflightParams) (*activities.PreflightResult, error) {
			return &activities.PreflightResult{Checked: 1}, nil
		}, activity.RegisterOptions{Name: "Preflight"})
		if err := lw.Start(); err != nil {
			b.Fatal(err)
		}
		defer lw.Stop()
	}

	// The schedules, as `strata schedule apply` makes them from the policy.
	setupStart := time.Now()
	changes, err := schedule.Apply(ctx, c.ScheduleClient(), cfg, false)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("fleet: %d instances on %d simulated agents (agent.max_concurrent %d), fleet.max_concurrent_backups %d; "+
		"schedule.full %q with jitter %s for %s; simulated backups of %s ±50%%\n",
		len(cfg.Instances), len(hosts), cfg.Agent.MaxConcurrentHeavy, cfg.Fleet.MaxConcurrentBackups, *cron, *jitter, *runFor, *backupFor)
	fmt.Printf("setup: schedule apply created %d schedules in %s; firing for %s\n", len(changes), time.Since(setupStart).Round(time.Millisecond), *runFor)

	cpu0, err := wproc.cpu()
	if err != nil {
		b.Fatalf("worker process: %v (%s)", err, werr.String())
	}
	t0 := time.Now()
	var maxRSS int64
	sampleRSS := func() {
		rss, _ := wproc.mem()
		maxRSS = max(maxRSS, rss)
	}
	tick := time.NewTicker(time.Second)
	deadline := time.After(*runFor)
sampling:
	for {
		select {
		case <-tick.C:
			sampleRSS()
		case <-deadline:
			break sampling
		}
	}
	tick.Stop()
	var ids []string
	for _, ch := range changes {
		ids = append(ids, ch.ID)
	}
	if err := deleteSchedules(ctx, c, ids); err != nil {
		b.Fatal(err)
	}
	// Drain: the runs started go to the end, or stop moving.
	drainStart := time.Now()
	running := fmt.Sprintf("WorkflowType IN ('%s', '%s') AND ExecutionStatus = 'Running'", workflows.BackupWorkflowName, workflows.ScheduledWorkflowName)
	var stuck []string
	lastCount, lastDone, lastMove := int64(-1), -1, time.Now()
	for {
		n, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: ns, Query: running})
		if err != nil {
			b.Fatal(err)
		}
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		if n.GetCount() == 0 && s.running.Load() == 0 {
			break
		}
		if n.GetCount() != lastCount || done != lastDone {
			lastCount, lastDone, lastMove = n.GetCount(), done, time.Now()
		} else if time.Since(lastMove) > 2*time.Minute {
			// Nothing moved for 2 minutes: name what is stuck and measure the rest.
			resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: ns, Query: running, PageSize: 20})
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range resp.GetExecutions() {
				stuck = append(stuck, e.GetExecution().GetWorkflowId())
			}
			break
		}
		sampleRSS()
		time.Sleep(2 * time.Second)
	}
	cpu1, _ := wproc.cpu()
	wall := time.Since(t0)
	rss, peak := wproc.mem()

	backups, err := listRuns(ctx, c, ns, workflows.BackupWorkflowName)
	if err != nil {
		b.Fatal(err)
	}
	scheduled, err := listRuns(ctx, c, ns, workflows.ScheduledWorkflowName)
	if err != nil {
		b.Fatal(err)
	}
	entities, err := listRuns(ctx, c, ns, workflows.InstanceWorkflowName)
	if err != nil {
		b.Fatal(err)
	}
	limiters, err := listRuns(ctx, c, ns, workflows.LimiterWorkflowName)
	if err != nil {
		b.Fatal(err)
	}

	fmt.Printf("backups: %d completed, %d failed or timed out; scheduled runs: %d completed, %d failed; %d simulated agent runs (drained in %s)\n",
		backups.completed, backups.failed, scheduled.completed, scheduled.failed, s.done, time.Since(drainStart).Round(time.Second))
	fmt.Printf("schedule fire -> ScheduledWorkflow start:  %s\n", percentiles(scheduled.fireToStart))
	fmt.Printf("agent activity schedule-to-start:          %s\n", percentiles(s.scheduleToStart))
	fmt.Printf("ScheduledWorkflow start -> agent starts:   %s\n", percentiles(s.fireToAgent))
	if n := backups.completed; n > 0 {
		per := func(r *runs) float64 { return float64(r.events) / float64(n) }
		fmt.Printf("history events per backup: %.1f = BackupWorkflow %.1f + ScheduledWorkflow %.1f + InstanceWorkflow %.1f (%d runs of %d entities) + LimiterWorkflow %.1f (%d runs)\n",
			per(backups)+per(scheduled)+per(entities)+per(limiters), per(backups), per(scheduled), per(entities), entities.all, entities.workflows,
			per(limiters), limiters.all)
	}
	fmt.Printf("worker process: CPU %.1fs over %s (%.2f cores on average), RSS %s at the end, %s peak sampled, %s high-water mark\n",
		(cpu1 - cpu0).Seconds(), wall.Round(time.Second), (cpu1-cpu0).Seconds()/wall.Seconds(), mib(rss), mib(maxRSS), mib(peak))
	fmt.Printf("per-agent limit: at most %d backups at once on one agent (agent.max_concurrent %d): %s\n",
		s.maxPerHost, cfg.Agent.MaxConcurrentHeavy, held(s.maxPerHost <= cfg.Agent.MaxConcurrentHeavy))
	if l := cfg.Fleet.MaxConcurrentBackups; l > 0 {
		fmt.Printf("fleet limit: at most %d backups at once over the fleet (fleet.max_concurrent_backups %d): %s\n", s.maxRunning.Load(), l,
			held(s.maxRunning.Load() <= int64(l)))
	} else {
		fmt.Printf("fleet limit: none configured; at most %d backups ran at once\n", s.maxRunning.Load())
	}
	if len(stuck) > 0 {
		fmt.Printf("STUCK: %d runs still running, with nothing moving for 2 minutes after the schedules were deleted: %s\n",
			lastCount, strings.Join(stuck, ", "))
	}
	for _, r := range []*runs{backups, scheduled} {
		if len(r.failures) > 0 {
			fmt.Printf("first failures: %s\n", strings.Join(r.failures, "; "))
		}
	}
}

func held(ok bool) string {
	if ok {
		return "held"
	}
	return "EXCEEDED"
}

func deleteSchedules(ctx context.Context, c client.Client, ids []string) error {
	errs := make(chan error, len(ids))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer func() { <-sem; wg.Done() }()
			if err := c.ScheduleClient().GetHandle(ctx, id).Delete(ctx); err != nil {
				errs <- fmt.Errorf("delete schedule %s: %w", id, err)
			}
		}(id)
	}
	wg.Wait()
	close(errs)
	var out []error
	for e := range errs {
		out = append(out, e)
	}
	return errors.Join(out...)
}

// runs is what visibility and the server say of one workflow type's runs.
type runs struct {
	all, workflows    int // runs (a continue-as-new is a new run) and workflow ids
	completed, failed int
	events            int64 // history events of all runs
	failures          []string
	fireToStart       []time.Duration // TemporalScheduledStartTime -> start
}

// listRuns lists every run of a workflow type. A running workflow's
// history length comes from DescribeWorkflowExecution (visibility records
// it when a run closes).
func listRuns(ctx context.Context, c client.Client, ns, wfType string) (*runs, error) {
	out := &runs{}
	ids := map[string]bool{}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: ns, PageSize: 1000, NextPageToken: token,
			Query: fmt.Sprintf("WorkflowType = '%s'", wfType)})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			out.all++
			ids[e.GetExecution().GetWorkflowId()] = true
			n := e.GetHistoryLength()
			switch e.GetStatus() {
			case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
				d, err := c.DescribeWorkflowExecution(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId())
				if err != nil {
					return nil, err
				}
				n = d.GetWorkflowExecutionInfo().GetHistoryLength()
			case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
				out.completed++
			default:
				out.failed++
				if len(out.failures) < 3 {
					out.failures = append(out.failures, e.GetExecution().GetWorkflowId()+" "+e.GetStatus().String()+": "+closeReason(ctx, c, e.GetExecution()))
				}
			}
			out.events += n
			if p, ok := e.GetSearchAttributes().GetIndexedFields()["TemporalScheduledStartTime"]; ok {
				var at time.Time
				if converter.GetDefaultDataConverter().FromPayload(p, &at) == nil {
					out.fireToStart = append(out.fireToStart, e.GetStartTime().AsTime().Sub(at))
				}
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			out.workflows = len(ids)
			return out, nil
		}
	}
}

// closeReason is the failure message of a closed run's close event.
func closeReason(ctx context.Context, c client.Client, ex *commonpb.WorkflowExecution) string {
	it := c.GetWorkflowHistory(ctx, ex.GetWorkflowId(), ex.GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return err.Error()
		}
		if a := ev.GetWorkflowExecutionFailedEventAttributes(); a != nil {
			msg := a.GetFailure().GetMessage()
			if cause := a.GetFailure().GetCause(); cause != nil {
				msg += ": " + cause.GetMessage()
			}
			return msg
		}
		if a := ev.GetWorkflowExecutionTimedOutEventAttributes(); a != nil {
			return "timed out"
		}
		if a := ev.GetWorkflowExecutionTerminatedEventAttributes(); a != nil {
			return "terminated: " + a.GetReason()
		}
	}
	return "?"
}
