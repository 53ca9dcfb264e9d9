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
	"github.com/strata-backup/strata/workflows"
)

var (
	nInstances = flag.Int("fleet.instances", 1000, "instances in the fleet")
	perHost    = flag.Int("fleet.per-host", 5, "instances per simulated agent host")
	agentMax   = flag.Int("fleet.agent-max", 2, "agent.max_concurrent: backups one agent runs at once")
	every      = flag.Duration("fleet.every", time.Minute, "each instance's schedule fires a full backup this often")
	runFor     = flag.Duration("fleet.duration", 3*time.Minute, "how long the schedules fire")
	backupFor  = flag.Duration("fleet.backup", 10*time.Second, "mean duration of a simulated backup (uniform in ±50%)")
	sample     = flag.Int("fleet.history-sample", 100, "backups whose histories are read to count events")
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

// fleetConfig is strata.yaml for n instances on hosts of perHost each. The
// instances' connections and datadirs are never used: the agents are
// simulated.
func fleetConfig(addr, root string, n, perHost, agentMax int) string {
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
instances:
`, addr, root, agentMax)
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
	fireToAgent         []time.Duration // schedule's nominal time -> agent starts the backup
	done                int
}

// backup is the simulated Agent.Backup: it sleeps for the instance's
// duration, heartbeating BackupProgress every second as the real one does.
func (s *sim) backup(ctx context.Context, p activities.BackupParams) (*activities.BackupSummary, error) {
	info := activity.GetInfo(ctx)
	start := time.Now()
	s.enter(info, start)
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

func (s *sim) enter(info activity.Info, now time.Time) {
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
		if nominal, ok := nominalTime(info.WorkflowExecution.ID); ok {
			s.fireToAgent = append(s.fireToAgent, now.Sub(nominal))
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

// nominalTime is the time a schedule meant to start a workflow, which it
// appends to the workflow id of its action ("<id>-2026-12-01T22:10:00Z").
func nominalTime(workflowID string) (time.Time, bool) {
	const n = len("2006-01-02T15:04:05Z")
	if len(workflowID) < n+1 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, workflowID[len(workflowID)-n:])
	return t, err == nil
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
	if *nInstances < 1 || *perHost < 1 || *every <= 0 {
		b.Fatal("-fleet.instances, -fleet.per-host and -fleet.every must be positive")
	}
	for i := 0; i < b.N; i++ {
		runFleet(b)
	}
}

func runFleet(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), *runFor+20*time.Minute)
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
	if err := os.WriteFile(cfgPath, []byte(fleetConfig(dev.FrontendHostPort(), filepath.Join(dir, "repo"), *nInstances, *perHost, *agentMax)), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}

	// One real worker process.
	var werr bytes.Buffer
	wk := exec.Command(bin, "worker", "--config", cfgPath, "--log-level", "warn")
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
	}

	setupStart := time.Now()
	ids, err := createSchedules(ctx, c, cfg, *every)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("fleet: %d instances on %d simulated agents (agent.max_concurrent %d), schedules every %s for %s, backups of %s ±50%%\n",
		len(cfg.Instances), len(hosts), cfg.Agent.MaxConcurrentHeavy, *every, *runFor, *backupFor)
	fmt.Printf("setup: %d schedules created in %s\n", len(ids), time.Since(setupStart).Round(time.Millisecond))

	cpu0, err := wproc.cpu()
	if err != nil {
		b.Fatalf("worker process: %v (%s)", err, werr.String())
	}
	t0 := time.Now()
	var maxRSS int64
	tick := time.NewTicker(time.Second)
	deadline := time.After(*runFor)
sampling:
	for {
		select {
		case <-tick.C:
			rss, _ := wproc.mem()
			maxRSS = max(maxRSS, rss)
		case <-deadline:
			break sampling
		}
	}
	if err := deleteSchedules(ctx, c, ids); err != nil {
		b.Fatal(err)
	}
	// Drain: the backups started go to the end.
	drainStart := time.Now()
	for {
		n, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: cfg.Temporal.Namespace,
			Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", workflows.BackupWorkflowName)})
		if err != nil {
			b.Fatal(err)
		}
		if n.GetCount() == 0 && s.running.Load() == 0 {
			break
		}
		if time.Since(drainStart) > 10*time.Minute {
			b.Fatalf("%d backups still running 10 minutes after the schedules were deleted", n.GetCount())
		}
		rss, _ := wproc.mem()
		maxRSS = max(maxRSS, rss)
		time.Sleep(2 * time.Second)
	}
	tick.Stop()
	cpu1, _ := wproc.cpu()
	wall := time.Since(t0)
	rss, peak := wproc.mem()

	closed, err := listClosed(ctx, c, cfg.Temporal.Namespace)
	if err != nil {
		b.Fatal(err)
	}
	events, err := historyEvents(ctx, c, closed.ids, *sample)
	if err != nil {
		b.Fatal(err)
	}

	fmt.Printf("backups: %d completed, %d failed or timed out; %d simulated agent runs (drained in %s)\n",
		closed.completed, closed.failed, s.done, time.Since(drainStart).Round(time.Second))
	fmt.Printf("schedule fire -> workflow start:  %s\n", percentiles(closed.fireToStart))
	fmt.Printf("activity schedule-to-start:       %s\n", percentiles(s.scheduleToStart))
	fmt.Printf("schedule fire -> agent starts:    %s\n", percentiles(s.fireToAgent))
	fmt.Printf("history events per backup:        %s\n", events)
	fmt.Printf("worker process: CPU %.1fs over %s (%.2f cores on average), RSS %s now, %s peak sampled, %s high-water mark\n",
		(cpu1 - cpu0).Seconds(), wall.Round(time.Second), (cpu1-cpu0).Seconds()/wall.Seconds(), mib(rss), mib(maxRSS), mib(peak))
	fmt.Printf("concurrency: at most %d backups at once in the fleet, %d on one agent (agent.max_concurrent %d: %s)\n",
		s.maxRunning.Load(), s.maxPerHost, cfg.Agent.MaxConcurrentHeavy, held(s.maxPerHost <= cfg.Agent.MaxConcurrentHeavy))
	fmt.Printf("fleet limit: none in this build's config; %d backups ran at once\n", s.maxRunning.Load())
	if closed.failed > 0 {
		fmt.Printf("first failures: %s\n", strings.Join(closed.failures, "; "))
	}
}

func held(ok bool) string {
	if ok {
		return "held"
	}
	return "EXCEEDED"
}

// createSchedules creates one full-backup schedule per instance, firing
// every interval, their offsets spread over the interval.
func createSchedules(ctx context.Context, c client.Client, cfg *config.Config, interval time.Duration) ([]string, error) {
	n := len(cfg.Instances)
	ids := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range cfg.Instances {
		in := cfg.Instances[i]
		ids[i] = workflows.ScheduleID(in.ID, "full")
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
				ID: ids[i],
				Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{
					Every: interval, Offset: time.Duration(i) * interval / time.Duration(n)}}},
				Action: &client.ScheduleWorkflowAction{
					ID:                    "backup/" + in.ID + "/scheduled",
					Workflow:              workflows.BackupWorkflowName,
					Args:                  []any{workflows.BackupRequest{Instance: in.ID, Type: "full"}},
					TaskQueue:             cfg.Temporal.TaskQueue,
					TypedSearchAttributes: workflows.SearchAttributes(in.ID, workflows.KindBackup, "", in.Host),
				},
				Overlap:               enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
				CatchupWindow:         interval,
				TypedSearchAttributes: workflows.SearchAttributes(in.ID, workflows.KindSchedule, "", in.Host),
			})
			if err != nil {
				errs <- fmt.Errorf("create schedule %s: %w", ids[i], err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return ids, errors.Join(collect(errs)...)
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
	return errors.Join(collect(errs)...)
}

func collect(ch <-chan error) []error {
	var out []error
	for e := range ch {
		out = append(out, e)
	}
	return out
}

// closedBackups is what visibility says of the finished backups.
type closedBackups struct {
	ids               []*commonpb.WorkflowExecution
	completed, failed int
	failures          []string
	fireToStart       []time.Duration
}

func listClosed(ctx context.Context, c client.Client, ns string) (*closedBackups, error) {
	out := &closedBackups{}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: ns, PageSize: 1000, NextPageToken: token,
			Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus != 'Running'", workflows.BackupWorkflowName)})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				out.completed++
				out.ids = append(out.ids, e.GetExecution())
			} else {
				out.failed++
				if len(out.failures) < 3 {
					out.failures = append(out.failures, e.GetExecution().GetWorkflowId()+" "+e.GetStatus().String())
				}
			}
			if p, ok := e.GetSearchAttributes().GetIndexedFields()["TemporalScheduledStartTime"]; ok {
				var at time.Time
				if converter.GetDefaultDataConverter().FromPayload(p, &at) == nil {
					out.fireToStart = append(out.fireToStart, e.GetStartTime().AsTime().Sub(at))
				}
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// historyEvents counts the events of up to n backups' histories.
func historyEvents(ctx context.Context, c client.Client, runs []*commonpb.WorkflowExecution, n int) (string, error) {
	if len(runs) == 0 {
		return "no completed backups", nil
	}
	step := max(1, len(runs)/n)
	var counts []int
	for i := 0; i < len(runs) && len(counts) < n; i += step {
		it := c.GetWorkflowHistory(ctx, runs[i].GetWorkflowId(), runs[i].GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		k := 0
		for it.HasNext() {
			if _, err := it.Next(); err != nil {
				return "", err
			}
			k++
		}
		counts = append(counts, k)
	}
	sort.Ints(counts)
	sum := 0
	for _, k := range counts {
		sum += k
	}
	return fmt.Sprintf("min %d  median %d  max %d  mean %.1f  (BackupWorkflow; %d histories read)", counts[0], counts[len(counts)/2],
		counts[len(counts)-1], float64(sum)/float64(len(counts)), len(counts)), nil
}
