// Package deployments_test validates the files of deployments/ with the real
// tools where they install (promtool of Debian's prometheus package,
// docker-compose of Debian's docker-compose package, systemd-analyze), by
// strict decoding into the Kubernetes API types, and by checking that every
// PromQL expression of the alert rules and the dashboard parses and names
// only metrics that Strata exports.
package deployments_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// needTool returns the path of a command, or fails the test naming the
// Debian package that brings it (scripts/setup.sh installs it: make deps).
func needTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: install Debian's %s package (apt-get install %s, or make deps)", name, debianPackage, debianPackage)
	}
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(readFile(t, path)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ---- Prometheus ------------------------------------------------------------------------------

func TestPrometheusRules(t *testing.T) {
	promtool := needTool(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"check", "config", "prometheus.yml"},
		{"test", "rules", "alerts_test.yaml", "alerts_long_test.yaml"},
	} {
		if out, err := run(t, "prometheus", nil, promtool, args...); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestEveryAlertHasUnitTests: each alert of alerts.yaml is tested firing
// (an eval with that alert expected) and silent (an eval expecting none), and
// has a severity, a summary, a description and a runbook in docs/.
func TestEveryAlertHasUnitTests(t *testing.T) {
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, "prometheus/alerts.yaml", &rules)
	if len(rules.Groups) != 1 || rules.Groups[0].Name != "strata" {
		t.Fatalf("alerts.yaml: want one group named strata, got %+v", rules.Groups)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, file := range []string{"prometheus/alerts_test.yaml", "prometheus/alerts_long_test.yaml"} {
		var f struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `json:"alertname"`
					ExpAlerts []any  `json:"exp_alerts"`
				} `json:"alert_rule_test"`
			} `json:"tests"`
		}
		readYAML(t, file, &f)
		for _, tc := range f.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					silent[a.Alertname] = true
				}
			}
		}
	}
	runbook := string(readFile(t, "../docs/alerts.md"))
	for _, r := range rules.Groups[0].Rules {
		if !fires[r.Alert] || !silent[r.Alert] {
			t.Errorf("alert %s: unit tests firing=%v silent=%v, want both", r.Alert, fires[r.Alert], silent[r.Alert])
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[k] == "" {
				t.Errorf("alert %s: no %s annotation", r.Alert, k)
			}
		}
		anchor := strings.ToLower(r.Alert)
		if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/alerts.md#"+anchor) {
			t.Errorf("alert %s: runbook_url %q, want .../docs/alerts.md#%s", r.Alert, r.Annotations["runbook_url"], anchor)
		}
		if !strings.Contains(runbook, "\n## "+r.Alert+"\n") {
			t.Errorf("alert %s: docs/alerts.md has no section \"## %s\"", r.Alert, r.Alert)
		}
	}
}

// ---- Grafana ---------------------------------------------------------------------------------

func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		UID        string      `json:"uid"`
		Title      string      `json:"title"`
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"list"`
		} `json:"templating"`
	}
	readJSON(t, "grafana/strata-dashboard.json", &d)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard has no uid or title")
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["instance"] != "query" || vars["datasource"] != "datasource" {
		t.Errorf("template variables %v: want instance (query) and datasource", vars)
	}
	ids := map[int]string{}
	var rows []string
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: datasource %s, want the ${datasource} variable", p.Title, p.Datasource)
		}
	}
	joined := strings.Join(rows, "|")
	if !strings.Contains(joined, "Fleet overview") || !strings.Contains(joined, "Instance $instance") {
		t.Errorf("rows %v: want a fleet overview row and an instance row", rows)
	}
	// The fleet table merges its queries on the instance label: each one
	// must give one row per instance.
	for _, p := range d.Panels {
		if p.Title != "Instances" {
			continue
		}
		if len(p.Targets) < 8 {
			t.Errorf("fleet table: %d queries", len(p.Targets))
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "by (instance)") < 1 || strings.Contains(tg.Expr, "by (instance,") {
				t.Errorf("fleet table: %q does not aggregate by (instance)", tg.Expr)
			}
		}
	}
	// The per-instance panels select the variable's instance.
	for _, p := range d.Panels {
		if p.GridPos.Y > rowY(d.Panels, "Instance $instance") && p.GridPos.Y < rowY(d.Panels, "Temporal SDK") && p.Type != "row" {
			for _, tg := range p.Targets {
				if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
					t.Errorf("panel %q of the instance row: %q does not select $instance", p.Title, tg.Expr)
				}
			}
		}
	}
}

func rowY(ps []dashPanel, title string) int {
	for _, p := range ps {
		if p.Type == "row" && p.Title == title {
			return p.GridPos.Y
		}
	}
	return 1 << 30
}

func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name, Type, URL string
		} `json:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yaml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Errorf("datasource provisioning: %+v", ds)
	}
	var dp struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Type    string `json:"type"`
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/strata.yaml", &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("dashboard provisioning: %+v", dp)
	}
	// compose mounts the dashboard into the provider's path.
	compose := string(readFile(t, "compose/docker-compose.yaml"))
	want := "../grafana/strata-dashboard.json:" + dp.Providers[0].Options.Path + "/strata-dashboard.json:ro"
	if !strings.Contains(compose, want) {
		t.Errorf("compose does not mount the dashboard at the provider's path: want %q", want)
	}
}

// ---- docker-compose --------------------------------------------------------------------------

// composeEnv sets the variables compose requires (env.example lists them).
var composeEnv = []string{"MARIADB_ROOT_PASSWORD=x", "STRATA_DB_PASSWORD=y", "GRAFANA_ADMIN_PASSWORD=z"}

func TestComposeConfig(t *testing.T) {
	dc := needTool(t, "docker-compose", "docker-compose")
	if out, err := run(t, "compose", composeEnv, dc, "-f", "docker-compose.yaml", "config", "-q"); err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, out)
	}
	// Every variable compose requires is in env.example.
	example := string(readFile(t, "compose/env.example"))
	for _, kv := range composeEnv {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(example, "\n"+k+"=") {
			t.Errorf("env.example does not list %s", k)
		}
	}
	var c struct {
		Services map[string]struct {
			Command []string `json:"command"`
			Volumes []string `json:"volumes"`
		} `json:"services"`
	}
	readYAML(t, "compose/docker-compose.yaml", &c)
	for _, s := range []string{"temporal", "mariadb", "strata-worker", "strata-agent", "prometheus", "grafana"} {
		if _, ok := c.Services[s]; !ok {
			t.Errorf("compose has no service %s", s)
		}
	}
	// Bind mounts name files of the repository (config validation does not look).
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
	}
}

// TestComposeConfigCatchesErrors: docker-compose rejects a planted unknown
// service key, so the check above can fail.
func TestComposeConfigCatchesErrors(t *testing.T) {
	dc := needTool(t, "docker-compose", "docker-compose")
	data := string(readFile(t, "compose/docker-compose.yaml"))
	bad := strings.Replace(data, "  prometheus:\n", "  prometheus:\n    restart_policyy: always\n", 1)
	if bad == data {
		t.Fatal("no prometheus service to plant the error in")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, dir, composeEnv, dc, "-f", "docker-compose.yaml", "config", "-q")
	if err == nil || !strings.Contains(out, "restart_policyy") {
		t.Fatalf("docker-compose config accepted an unknown key (err %v):\n%s", err, out)
	}
}

// TestMetricsPortsAgree: the worker serves /metrics on 9464 and the agent on
// 9465 in compose, Kubernetes and systemd, and prometheus.yml scrapes those.
func TestMetricsPortsAgree(t *testing.T) {
	var p struct {
		ScrapeConfigs []struct {
			JobName        string `json:"job_name"`
			HonorLabels    bool   `json:"honor_labels"`
			RelabelConfigs []struct {
				SourceLabels []string `json:"source_labels"`
				TargetLabel  string   `json:"target_label"`
				Action       string   `json:"action"`
				Regex        string   `json:"regex"`
				Replacement  string   `json:"replacement"`
			} `json:"relabel_configs"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &p)
	targets := map[string]string{}
	for _, sc := range p.ScrapeConfigs {
		if !sc.HonorLabels {
			t.Errorf("prometheus.yml job %s: honor_labels is off, so the instance label of strata_* metrics becomes exported_instance", sc.JobName)
		}
		// With honor_labels, two worker replicas export the same catalog
		// series: a per-target label keeps them apart.
		perTarget := false
		for _, rc := range sc.RelabelConfigs {
			perTarget = perTarget || (len(rc.SourceLabels) == 1 && rc.SourceLabels[0] == "__address__" &&
				rc.TargetLabel == "scrape_target" && (rc.Action == "" || rc.Action == "replace") &&
				rc.Regex == "" && rc.Replacement == "")
		}
		if !perTarget {
			t.Errorf("prometheus.yml job %s: no relabel rule copies __address__ into scrape_target, so two replicas merge into one series", sc.JobName)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[sc.JobName] = tg
			}
		}
	}
	want := map[string]string{"strata-worker": "strata-worker:9464", "strata-agent": "strata-agent:9465"}
	for job, tg := range want {
		if targets[job] != tg {
			t.Errorf("prometheus.yml job %s scrapes %q, want %q (the compose service and port)", job, targets[job], tg)
		}
	}
	compose := string(readFile(t, "compose/docker-compose.yaml"))
	for _, s := range []string{`["worker", "--metrics-listen", ":9464"]`, `"--metrics-listen", ":9465"]`} {
		if !strings.Contains(compose, s) {
			t.Errorf("compose: no %s", s)
		}
	}
	worker := string(readFile(t, "systemd/strata-worker.service"))
	agent := string(readFile(t, "systemd/strata-agent@.service"))
	for unit, want := range map[string][]string{
		worker: {"Environment=STRATA_WORKER_METRICS_LISTEN=:9464\n", "strata worker --metrics-listen ${STRATA_WORKER_METRICS_LISTEN}\n"},
		agent:  {"Environment=STRATA_AGENT_METRICS_LISTEN=:9465\n", "--metrics-listen ${STRATA_AGENT_METRICS_LISTEN}\n"},
	} {
		for _, w := range want {
			if !strings.Contains(unit, w) {
				t.Errorf("systemd unit has no %q", w)
			}
		}
	}
}

// ---- systemd ---------------------------------------------------------------------------------

// unitKeys are the keys the units use, by section: a key outside this list
// is a typo or needs adding here after checking systemd.directives(7).
var unitKeys = map[string][]string{
	"Unit":    {"Description", "Wants", "After"},
	"Install": {"WantedBy"},
	"Timer":   {"OnCalendar", "RandomizedDelaySec", "Persistent"},
	"Service": {"Type", "User", "Group", "Environment", "EnvironmentFile", "ExecStart", "Restart", "RestartSec",
		"KillMode", "KillSignal", "TimeoutStopSec", "TimeoutStartSec", "LimitNOFILE", "Nice", "IOSchedulingClass",
		"IOSchedulingPriority", "UMask", "StateDirectory", "StateDirectoryMode", "ProtectSystem", "ReadWritePaths",
		"ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
		"ProtectHostname", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
		"LockPersonality", "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "ProtectProc",
		"MemoryDenyWriteExecute"},
}

// parseUnit returns the unit's keys by section; continuation lines (ending in
// a backslash) belong to their key.
func parseUnit(data string) (map[string]map[string][]string, error) {
	secs := map[string]map[string][]string{}
	sec := ""
	cont := false
	for i, ln := range strings.Split(data, "\n") {
		l := strings.TrimSpace(ln)
		wasCont := cont
		cont = strings.HasSuffix(l, `\`)
		switch {
		case wasCont:
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			sec = l[1 : len(l)-1]
			if secs[sec] == nil {
				secs[sec] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || sec == "" {
				return nil, &unitError{line: i + 1, msg: "not KEY=value inside a [section]: " + l}
			}
			secs[sec][strings.TrimSpace(k)] = append(secs[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return secs, nil
}

type unitError struct {
	line int
	msg  string
}

func (e *unitError) Error() string { return "line " + strconv.Itoa(e.line) + ": " + e.msg }

func unitFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"systemd/*.service", "systemd/*.timer"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 7 {
		t.Fatalf("only %d unit files in systemd/", len(files))
	}
	return files
}

func checkUnitKeys(name, data string) []string {
	known := map[string]map[string]bool{}
	for s, ks := range unitKeys {
		known[s] = map[string]bool{}
		for _, k := range ks {
			known[s][k] = true
		}
	}
	secs, err := parseUnit(data)
	if err != nil {
		return []string{name + ": " + err.Error()}
	}
	var problems []string
	for s, keys := range secs {
		if known[s] == nil {
			problems = append(problems, name+": unknown section ["+s+"]")
			continue
		}
		for k := range keys {
			if !known[s][k] {
				problems = append(problems, name+": unknown key "+k+" in ["+s+"]")
			}
		}
	}
	return problems
}

func TestSystemdUnitKeys(t *testing.T) {
	for _, f := range unitFiles(t) {
		data := string(readFile(t, f))
		for _, p := range checkUnitKeys(f, data) {
			t.Error(p)
		}
		secs, _ := parseUnit(data)
		if strings.HasSuffix(f, ".service") {
			if len(secs["Service"]["ExecStart"]) != 1 {
				t.Errorf("%s: want one ExecStart", f)
			}
			for _, k := range []string{"ProtectSystem", "NoNewPrivileges", "PrivateTmp", "CapabilityBoundingSet", "SystemCallFilter"} {
				if len(secs["Service"][k]) == 0 {
					t.Errorf("%s: no %s (hardening)", f, k)
				}
			}
		}
	}
	if p := checkUnitKeys("planted", "[Service]\nExecStart=/bin/true\nProtectSytem=strict\n"); len(p) != 1 || !strings.Contains(p[0], "ProtectSytem") {
		t.Errorf("a misspelled key was not reported: %v", p)
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on copies of the
// units whose /usr/local/bin paths point to an executable stand-in (the
// binaries are not installed here); any message fails.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian's systemd package); TestSystemdUnitKeys checks the keys")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"strata", "temporal"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var args []string
	inst := map[string]string{
		"strata-agent@.service": "strata-agent@db1-host.service", "strata-backup@.service": "strata-backup@db1.service",
		"strata-backup@.timer": "strata-backup@db1.timer", "strata-prune@.service": "strata-prune@db1.service",
		"strata-prune@.timer": "strata-prune@db1.timer",
	}
	for _, f := range unitFiles(t) {
		data := strings.ReplaceAll(string(readFile(t, f)), "/usr/local/bin/", bin+"/")
		base := filepath.Base(f)
		if err := os.WriteFile(filepath.Join(dir, base), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		name := base
		if n, ok := inst[base]; ok {
			name = n
		}
		args = append(args, filepath.Join(dir, name))
	}
	out, err := run(t, dir, nil, sa, append([]string{"verify"}, args...)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The same check reports a planted unknown key.
	planted := strings.Replace(string(readFile(t, "systemd/strata-worker.service")), "[Service]\n", "[Service]\nProtectSytem=strict\n", 1)
	planted = strings.ReplaceAll(planted, "/usr/local/bin/", bin+"/")
	p := filepath.Join(dir, "planted.service")
	if err := os.WriteFile(p, []byte(planted), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, dir, nil, sa, "verify", p); !strings.Contains(out, "ProtectSytem") {
		t.Errorf("systemd-analyze verify did not report a planted unknown key:\n%s", out)
	}
}

var reEnvRef = regexp.MustCompile(`\$\{(\w+)\}`)

// TestSystemdExecStartVariables: every ${VAR} of an ExecStart has a default
// in an Environment= line of the same unit (an unset one would pass an empty
// argument), and strata.env.example shows how to override it.
func TestSystemdExecStartVariables(t *testing.T) {
	example := string(readFile(t, "systemd/strata.env.example"))
	for _, f := range unitFiles(t) {
		secs, err := parseUnit(string(readFile(t, f)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, ex := range secs["Service"]["ExecStart"] {
			for _, m := range reEnvRef.FindAllStringSubmatch(ex, -1) {
				if !strings.Contains(example, "\n"+m[1]+"=") && !strings.Contains(example, "\n#"+m[1]+"=") {
					t.Errorf("%s: strata.env.example does not show ${%s}", f, m[1])
				}
				found := false
				for _, e := range secs["Service"]["Environment"] {
					found = found || strings.HasPrefix(strings.Trim(e, `"`), m[1]+"=")
				}
				if !found {
					t.Errorf("%s: ExecStart uses ${%s}, which no Environment= of the unit sets", f, m[1])
				}
			}
		}
	}
}
