package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// prometheusBinary is Debian's prometheus (scripts/setup.sh installs it).
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("STRATA_PROMETHEUS_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("the prometheus binary is missing: install Debian's prometheus package (scripts/setup.sh does: apt-get install prometheus) or set STRATA_PROMETHEUS_BIN")
	}
	return p
}

// freeAddr returns a 127.0.0.1 address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// promSample is one series of an instant query's answer.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (p promSample) value(t *testing.T) float64 {
	t.Helper()
	s, _ := p.Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err, "value %v", p.Value)
	return v
}

// promQuery runs an instant query against the Prometheus HTTP API.
func promQuery(t *testing.T, base, q string) ([]promSample, error) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("query %s: %v: %.300s", q, err, body)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, out.Error)
	}
	return out.Data.Result, nil
}

// TestPrometheusScrapesWorkerAndAgent runs a real Prometheus that scrapes
// the worker's /metrics (in this process) and an agent process's, takes a
// backup, and finds its metrics with PromQL.
func TestPrometheusScrapesWorkerAndAgent(t *testing.T) {
	prom := prometheusBinary(t)
	agentAddr := freeAddr(t)
	s := newStack(t, stackOptionFunc(func(c *stackSetup) {
		c.config += fmt.Sprintf("metrics:\n  agent_listen: %s\n  refresh_interval: 1s\nagent:\n  scratch_dir: %s\n", agentAddr, t.TempDir())
	}))

	// The agent as a process, serving metrics.agent_listen.
	s.agent.Stop()
	s.agent = nil
	s.startAgentProcess()

	// The worker's endpoint and refresh loop, as `strata worker` runs them.
	ws, err := metrics.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.Close() })
	policy := config.NewWatcher(s.cfg, 0, s.log)
	go workers.RunMetrics(s.ctx, s.client, policy, s.repo, s.log)

	dir := t.TempDir()
	promAddr := freeAddr(t)
	// honor_labels keeps the metrics' own instance label (the database
	// instance) instead of renaming it to exported_instance.
	yml := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: strata-worker
    honor_labels: true
    static_configs:
      - targets: [%q]
  - job_name: strata-agent
    honor_labels: true
    static_configs:
      - targets: [%q]
`, ws.Addr(), agentAddr)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(yml), 0o600))
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	defer logFile.Close()
	cmd := exec.Command(prom, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	base := "http://" + promAddr
	promLog := func() string {
		b, _ := os.ReadFile(logFile.Name())
		return string(b)
	}

	// Both targets are up before the backup.
	require.Eventually(t, func() bool {
		up, err := promQuery(t, base, `up == 1`)
		return err == nil && len(up) == 2
	}, 2*time.Minute, 500*time.Millisecond, "Prometheus never scraped both targets; its log:\n%s", promLog())

	// The archiver runs on the agent process while the backup is taken.
	db := s.numbered()
	arch := s.startArchive("db1", 10*time.Minute)
	insertRows(t, db, 1, 20)
	res := s.backup("m1", "full")
	insertRows(t, db, 21, 40)
	s.waitArchived("db1", gtidPos(t, db))

	// want waits for the query to answer and returns its series.
	want := func(q string, ok func([]promSample) bool) []promSample {
		t.Helper()
		var got []promSample
		var qerr error
		found := assert.Eventually(t, func() bool {
			got, qerr = promQuery(t, base, q)
			return qerr == nil && len(got) > 0 && (ok == nil || ok(got))
		}, 2*time.Minute, 500*time.Millisecond)
		require.True(t, found, "Prometheus never answered %s (last answer %v, error %v); its log:\n%s", q, got, qerr, promLog())
		return got
	}
	m, err := s.repo.ReadManifest(s.ctx, "db1", res.BackupID)
	require.NoError(t, err)
	assert.Equal(t, 1, m.FormatVersion, "a backup without table sums or lz4 is format 1: every Strata reads it")
	assert.Equal(t, pipeline.DefaultZstdLevel, m.CompressionLevel, "the effective level is recorded, not 0")
	last := want(`strata_backup_last_success_timestamp_seconds{instance="db1",type="full"}`, nil)
	assert.Equal(t, "strata-worker", last[0].Metric["job"])
	assert.InDelta(t, float64(m.EndTime.UnixNano())/1e9, last[0].value(t), 0.001, "the last success is the backup's end time")

	// The agent's own series (this test's process also exports, on the
	// worker's endpoint, what the in-process agents of earlier tests
	// recorded).
	dur := want(`strata_backup_duration_seconds_count{job="strata-agent",instance="db1",type="full"}`, nil)
	assert.Equal(t, "strata-agent", dur[0].Metric["job"], "the agent that ran the backup exports its duration")
	assert.Equal(t, 1.0, dur[0].value(t))
	want(`strata_backups_total{job="strata-agent",instance="db1",type="full",result="success"}`, func(r []promSample) bool { return r[0].value(t) == 1 })
	raw := want(`strata_backup_raw_bytes_total{job="strata-agent",instance="db1",type="full"}`, nil)
	assert.Equal(t, float64(m.RawSize), raw[0].value(t))
	want(`strata_storage_requests_total{job="strata-agent",backend="local",op="put"}`, nil)

	// The archiver's status (agent) and the point-in-time window (worker).
	want(`strata_archive_running{instance="db1",job="strata-agent"} == 1`, nil)
	want(`strata_archive_lag_seconds{instance="db1"} >= 0`, nil)
	want(`strata_archive_writes_total{instance="db1"} > 0`, nil)
	s.stopArchive(arch)
	want(`strata_archive_running{instance="db1",job="strata-agent"} == 0`, nil)
	ix, err := (&binlog.Store{B: s.repo.Backend(), Instance: "db1", CheckAllData: true}).ReadIndex(s.ctx)
	require.NoError(t, err)
	backups, err := s.repo.ListBackups(s.ctx, "db1")
	require.NoError(t, err)
	wins := binlog.Windows(backups, ix)
	require.Len(t, wins, 1)
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	// Binlog event times have whole seconds: the window may end before the
	// backup's consistent point when nothing was written in a later second.
	for q, at := range map[string]time.Time{
		`strata_pitr_window_start_timestamp_seconds{instance="db1"}`: wins[0].FromTime,
		`strata_pitr_window_end_timestamp_seconds{instance="db1"}`:   wins[0].ToTime,
	} {
		want(fmt.Sprintf(`abs(%s - %f) < 0.001`, q, unix(at)), nil)
	}
	want(`strata_pitr_window_gaps{instance="db1"} == 0`, nil)

	// A drill of the backup: its result, RTO and RPO (worker). The worker's
	// counter lives in this test process, which earlier drill tests of the
	// package may have counted into already: count from its value now.
	var drillsBefore float64
	if got, err := promQuery(t, base, `strata_drills_total{instance="db1",result="passed"}`); err == nil && len(got) == 1 {
		drillsBefore = got[0].value(t)
	}
	dres, err := s.drill(workflows.DrillRequest{Instance: "db1", DrillID: "m1-drill"})
	require.NoError(t, err)
	rep := s.report("m1-drill")
	require.True(t, rep.Passed(), "%+v", rep)
	assert.Equal(t, res.BackupID, rep.BackupID, "%+v", dres)
	want(`strata_drill_last_result{instance="db1",job="strata-worker"} == 1`, nil)
	want(fmt.Sprintf(`strata_drills_total{instance="db1",result="passed"} == %g`, drillsBefore+1), nil)
	want(fmt.Sprintf(`abs(strata_drill_rto_seconds{instance="db1"} - %f) < 0.001`, rep.RTOSeconds), nil)
	want(fmt.Sprintf(`abs(strata_drill_last_timestamp_seconds{instance="db1"} - %f) < 0.001`, unix(rep.Finished)), nil)
	want(`strata_drill_rpo_seconds{instance="db1"} >= 0`, nil)
	want(`strata_drill_phase_seconds{instance="db1",phase="restore"} > 0`, nil)

	// The Temporal SDK's own metrics, from both processes.
	for _, job := range []string{"strata-worker", "strata-agent"} {
		got := want(fmt.Sprintf(`count by (job) ({__name__=~"temporal_.+",job=%q})`, job), nil)
		assert.Positive(t, got[0].value(t), job)
	}
	sdk := want(`temporal_request{job="strata-agent"}`, nil)
	assert.NotEmpty(t, sdk[0].Metric["namespace"], "the SDK's tags are labels")

	// Every example query of docs/metrics.md runs.
	for _, q := range docQueries(t) {
		_, err := promQuery(t, base, q)
		assert.NoError(t, err, "docs/metrics.md: %s", q)
	}
	if t.Failed() {
		t.Logf("prometheus log:\n%s", promLog())
	}
}

// docQueries returns the expressions of docs/metrics.md's promql block: a
// line that starts in column one starts one, an indented line continues it,
// comments and blank lines separate them.
func docQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "metrics.md"))
	require.NoError(t, err)
	_, block, ok := strings.Cut(string(b), "```promql\n")
	require.True(t, ok, "docs/metrics.md has no promql block")
	block, _, _ = strings.Cut(block, "```")
	var out []string
	for _, line := range strings.Split(block, "\n") {
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, " ") && len(out) > 0:
			out[len(out)-1] += " " + strings.TrimSpace(line)
		default:
			out = append(out, line)
		}
	}
	require.Greater(t, len(out), 10)
	return out
}
