package deployments_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/strata-backup/strata/internal/metrics"
)

// promqlKeywords are the identifiers of PromQL that are not metric names
// when they stand outside a function call.
var promqlKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "start": true, "end": true,
	"inf": true, "nan": true, "atan2": true,
}

var (
	reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	reBraces   = regexp.MustCompile(`\{[^{}]*\}`)
	reBrackets = regexp.MustCompile(`\[[^\[\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	reVariable = regexp.MustCompile(`\$\{?\w+\}?`)
	reIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	reNumber   = regexp.MustCompile(`\b\d[\w.]*`)
)

// seriesNames returns the metric names an expression selects: the
// identifiers outside strings, label matchers, ranges and grouping clauses
// that are neither keywords nor function calls. The expression's syntax is
// checked by promtool (see checkPromQL); this only finds the names in it.
func seriesNames(expr string) []string {
	s := reString.ReplaceAllString(expr, `""`)
	s = reVariable.ReplaceAllString(s, " ")
	for prev := ""; prev != s; {
		prev = s
		s = reBraces.ReplaceAllString(s, " ")
		s = reBrackets.ReplaceAllString(s, " ")
	}
	s = reGrouping.ReplaceAllString(s, " ")
	s = reNumber.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	var names []string
	for _, loc := range reIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promqlKeywords[strings.ToLower(id)] || seen[id] {
			continue
		}
		seen[id] = true
		names = append(names, id)
	}
	return names
}

func TestSeriesNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`time() - max by (instance) (strata_backup_last_success_timestamp_seconds{type="full"}) > 26 * 3600`,
			[]string{"strata_backup_last_success_timestamp_seconds"}},
		{`sum by (job, op) (rate(a_total{x=~"b|c"}[5m])) / sum without (le) (rate(b_total[$__rate_interval] offset 1h))`,
			[]string{"a_total", "b_total"}},
		{`histogram_quantile(0.9, sum by (le) (rate(h_bucket{instance=~"$instance"}[5m])))`, []string{"h_bucket"}},
		{`x * 0 + Inf unless on (instance) y or z > bool 1e3`, []string{"x", "y", "z"}},
		{`m1 + on (instance) group_left (kind) m2 and ignoring (type) m3`, []string{"m1", "m2", "m3"}},
		{`label_replace(up, "dst", "$1", "src", "(.*)")`, []string{"up"}},
		{`max_over_time(lag[1h:5m])`, []string{"lag"}},
	}
	for _, c := range cases {
		got := seriesNames(c.expr)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("seriesNames(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
}

// sdkMetricNames reads the metric names the Temporal SDK uses from its
// constants (go.temporal.io/sdk/internal/common/metrics/constants.go of the
// version go.mod requires): every string constant that starts with
// "temporal_".
func sdkMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.temporal.io/sdk").Output()
	if err != nil {
		t.Fatalf("go list -m go.temporal.io/sdk: %v", err)
	}
	file := filepath.Join(strings.TrimSpace(string(out)), "internal", "common", "metrics", "constants.go")
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatalf("parse the SDK's metric constants: %v", err)
	}
	exprs := map[string]ast.Expr{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					exprs[n.Name] = vs.Values[i]
				}
			}
		}
	}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			if x, ok := exprs[e.Name]; ok {
				return eval(x)
			}
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, ok1 := eval(e.X)
				b, ok2 := eval(e.Y)
				return a + b, ok1 && ok2
			}
		case *ast.ParenExpr:
			return eval(e.X)
		}
		return "", false
	}
	names := map[string]bool{}
	for _, e := range exprs {
		if s, ok := eval(e); ok && strings.HasPrefix(s, "temporal_") && s != "temporal_" && s != "temporal_go" {
			names[s] = true
		}
	}
	if len(names) < 20 || !names["temporal_activity_execution_failed"] {
		t.Fatalf("read only %d metric names from %s; has the SDK moved its constants?", len(names), file)
	}
	return names
}

// exportedSeries reports whether a series name is exported by Strata:
// a strata_* (or runtime) family of metrics.Names(), a histogram's
// _bucket/_sum/_count, one of the Temporal SDK's metrics (its timers are
// histograms, named *_latency), or Prometheus' own up.
func exportedSeries(sdk map[string]bool) func(string) bool {
	return func(name string) bool {
		if name == "up" || metrics.HasSeries(name) {
			return true
		}
		if sdk[name] {
			return true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && sdk[base] && strings.HasSuffix(base, "_latency") {
				return true
			}
		}
		return false
	}
}

func TestExportedSeries(t *testing.T) {
	ok := exportedSeries(sdkMetricNames(t))
	for _, n := range []string{
		"strata_backup_last_success_timestamp_seconds", "strata_backup_duration_seconds_bucket",
		"strata_fleet_queue_depth", "temporal_activity_execution_failed",
		"temporal_activity_schedule_to_start_latency_bucket", "up",
	} {
		if !ok(n) {
			t.Errorf("%s is exported, but the check says it is not", n)
		}
	}
	for _, n := range []string{
		"strata_backup_last_success", "strata_archive_lag_seconds_bucket", "strata_nope_total",
		"temporal_activity_execution_failed_bucket", "temporal_nope", "go_nope",
	} {
		if ok(n) {
			t.Errorf("%s is not exported, but the check accepts it", n)
		}
	}
}

// strataLabels returns the label names of every family on the metrics
// registry, read from the descriptors (`..., variableLabels: {a,b}}`).
func strataLabels(t *testing.T) map[string]map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() {
		metrics.Registry().Describe(ch)
		close(ch)
	}()
	reName := regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	out := map[string]map[string]bool{}
	for d := range ch {
		s := d.String()
		m := reName.FindStringSubmatch(s)
		i := strings.LastIndex(s, "variableLabels: {")
		if m == nil || i < 0 {
			t.Fatalf("cannot read the descriptor %s", s)
		}
		labels := map[string]bool{}
		list, _, _ := strings.Cut(s[i+len("variableLabels: {"):], "}")
		for _, l := range strings.Split(list, ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels[l] = true
			}
		}
		out[m[1]] = labels
	}
	return out
}

var (
	reSelector = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)\{([^{}]*)\}`)
	reMatcher  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// badLabels reports the label matchers of strata_* selectors that name a
// label the family does not have (job and instance are also the target's,
// scrape_target is set by prometheus.yml's relabel rule).
func badLabels(expr string, families map[string]map[string]bool) []string {
	var bad []string
	for _, m := range reSelector.FindAllStringSubmatch(reString.ReplaceAllString(expr, `""`), -1) {
		name := m[1]
		if !strings.HasPrefix(name, "strata_") {
			continue
		}
		labels, ok := families[name]
		extra := ""
		if !ok {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, suf); cut && families[base] != nil {
					labels = families[base]
					if suf == "_bucket" {
						extra = "le"
					}
				}
			}
		}
		if labels == nil {
			continue // reported as an unknown series
		}
		for _, lm := range reMatcher.FindAllStringSubmatch(m[2], -1) {
			l := lm[1]
			if !labels[l] && l != "job" && l != "instance" && l != "scrape_target" && l != extra {
				bad = append(bad, fmt.Sprintf("%s has no label %s", name, l))
			}
		}
	}
	return bad
}

func TestBadLabels(t *testing.T) {
	fam := strataLabels(t)
	if got := badLabels(`strata_backup_last_success_timestamp_seconds{type="full",instance="a"}`, fam); len(got) != 0 {
		t.Errorf("good matchers reported: %v", got)
	}
	if got := badLabels(`rate(strata_backup_duration_seconds_bucket{le="1",type="full"}[5m])`, fam); len(got) != 0 {
		t.Errorf("le of a histogram's buckets reported: %v", got)
	}
	got := badLabels(`strata_backup_last_success_timestamp_seconds{kind="full"} or strata_archive_lag_seconds{le="1"}`, fam)
	if len(got) != 2 {
		t.Errorf("badLabels = %v, want kind and le reported", got)
	}
}

// dashboardExprs returns every PromQL expression of the dashboard, panel
// targets and query variables, named by where they are.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	var d struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	readJSON(t, "grafana/strata-dashboard.json", &d)
	exprs := map[string]string{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				exprs[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	reLabelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query: %v", v.Name, err)
		}
		m := reLabelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, q.Query)
		}
		exprs["variable "+v.Name] = m[1]
	}
	return exprs
}

type dashPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource json.RawMessage          `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

// alertExprs returns the expression of every alert rule, by alert name.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, "prometheus/alerts.yaml", &f)
	exprs := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	return exprs
}

// grafanaVars replaces the dashboard's variables by values of their kind,
// so that promtool can parse the expression.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "${instance}", "db1", "$instance", "db1",
)

// checkPromQL parses every expression with promtool (as the alert rules of
// a temporary rule file) and checks that each names only exported series.
func checkPromQL(t *testing.T, exprs map[string]string, exported func(string) bool) []string {
	t.Helper()
	promtool := needTool(t, "promtool", "prometheus")
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type rule struct {
		Alert string `json:"alert"`
		Expr  string `json:"expr"`
	}
	var rules []rule
	var problems []string
	families := strataLabels(t)
	for i, k := range keys {
		e := grafanaVars.Replace(exprs[k])
		rules = append(rules, rule{Alert: fmt.Sprintf("E%d", i), Expr: e})
		for _, b := range badLabels(e, families) {
			problems = append(problems, k+": "+b)
		}
		names := seriesNames(e)
		if len(names) == 0 && !strings.Contains(e, "time()") {
			problems = append(problems, fmt.Sprintf("%s: no metric name found in %q", k, e))
		}
		for _, n := range names {
			if !exported(n) {
				problems = append(problems, fmt.Sprintf("%s: %s is not a metric Strata exports (internal/metrics, the Temporal SDK)", k, n))
			}
		}
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "exprs", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "exprs.yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		var idx strings.Builder
		for i, k := range keys {
			fmt.Fprintf(&idx, "  E%d = %s\n", i, k)
		}
		problems = append(problems, fmt.Sprintf("promtool check rules of the expressions: %v\n%s\n%s", err, out, idx.String()))
	}
	return problems
}

func TestPromQLOfAlertsAndDashboard(t *testing.T) {
	exported := exportedSeries(sdkMetricNames(t))
	exprs := alertExprs(t)
	if len(exprs) < 9 {
		t.Fatalf("only %d alert rules in prometheus/alerts.yaml", len(exprs))
	}
	for k, v := range dashboardExprs(t) {
		exprs[k] = v
	}
	for _, p := range checkPromQL(t, exprs, exported) {
		t.Error(p)
	}
}

// TestPromQLCheckCatchesBadExpressions plants a syntax error and a metric
// that Strata does not export: the check must report both.
func TestPromQLCheckCatchesBadExpressions(t *testing.T) {
	exported := exportedSeries(sdkMetricNames(t))
	problems := checkPromQL(t, map[string]string{
		"good":    `max by (instance) (strata_archive_lag_seconds) > 60`,
		"unknown": `rate(strata_backup_failures_total[5m]) > 0`,
		"label":   `strata_schedule_interval_seconds{type="drill"}`,
		"syntax":  `sum by (instance (strata_pitr_window_gaps)`,
	}, exported)
	all := strings.Join(problems, "\n")
	if !strings.Contains(all, "unknown: strata_backup_failures_total is not a metric") {
		t.Errorf("the unknown metric was not reported:\n%s", all)
	}
	if !strings.Contains(all, "label: strata_schedule_interval_seconds has no label type") {
		t.Errorf("the wrong label was not reported:\n%s", all)
	}
	if !strings.Contains(all, "promtool check rules") || !strings.Contains(all, "E2 = syntax") {
		t.Errorf("the syntax error was not reported:\n%s", all)
	}
	if strings.Contains(all, "good:") {
		t.Errorf("the good expression was reported:\n%s", all)
	}
}

// TestAlertTestSeriesExported: the series the promtool unit tests feed the
// rules are exported too, so that the tests exercise real metrics.
func TestAlertTestSeriesExported(t *testing.T) {
	exported := exportedSeries(sdkMetricNames(t))
	families := strataLabels(t)
	for _, file := range []string{"prometheus/alerts_test.yaml", "prometheus/alerts_long_test.yaml"} {
		var f struct {
			Tests []struct {
				Name        string `json:"name"`
				InputSeries []struct {
					Series string `json:"series"`
				} `json:"input_series"`
			} `json:"tests"`
		}
		readYAML(t, file, &f)
		if len(f.Tests) == 0 {
			t.Fatalf("%s has no tests", file)
		}
		for _, tc := range f.Tests {
			for _, s := range tc.InputSeries {
				name, _, _ := strings.Cut(s.Series, "{")
				if !exported(name) {
					t.Errorf("%s, test %q: series %s is not a metric Strata exports", file, tc.Name, name)
				}
				for _, b := range badLabels(s.Series, families) {
					t.Errorf("%s, test %q: %s", file, tc.Name, b)
				}
			}
		}
	}
}
