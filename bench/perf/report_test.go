package perf

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// sample is one measured run of one method.
type sample struct {
	Seconds     float64 `json:"seconds"`                // wall time
	RawBytes    int64   `json:"raw_bytes,omitempty"`    // stream bytes
	StoredBytes int64   `json:"stored_bytes,omitempty"` // bytes written to storage
	// CPU is the CPU-seconds of the method's own processes: for Strata the
	// agent (AgentCPU), the backup tools it ran (ToolCPU) and the worker
	// (WorkerCPU); for a peer pipeline all its processes (ToolCPU).
	CPU       float64 `json:"cpu_seconds"`
	AgentCPU  float64 `json:"agent_cpu_seconds,omitempty"`
	ToolCPU   float64 `json:"tool_cpu_seconds,omitempty"`
	WorkerCPU float64 `json:"worker_cpu_seconds,omitempty"`
	ServerCPU float64 `json:"source_server_cpu_seconds,omitempty"`
	// PeakMiB is the agent's peak RSS during the run (Strata), or the
	// largest peak RSS of the pipeline's processes (peer).
	PeakMiB float64 `json:"peak_mib,omitempty"`
	// Extra holds the section's own figures (stall ms, replay seconds,
	// orchestration overhead, history events...).
	Extra map[string]float64 `json:"extra,omitempty"`
}

func (s *sample) set(k string, v float64) {
	if s.Extra == nil {
		s.Extra = map[string]float64{}
	}
	s.Extra[k] = v
}

// method is a row of a section: every run's sample and their medians.
type method struct {
	Name    string             `json:"name"`
	Peer    bool               `json:"peer"`
	Runs    []sample           `json:"runs"`
	Median  map[string]float64 `json:"median"`
	Command string             `json:"command,omitempty"`
}

type section struct {
	Name    string    `json:"name"`
	Note    string    `json:"note,omitempty"`
	Methods []*method `json:"methods"`
	// Ratios are Strata / peer of the medians, named "metric: strata / peer".
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

type results struct {
	Date     string            `json:"date"`
	Host     map[string]string `json:"host"`
	Settings map[string]string `json:"settings"`
	Sections []*section        `json:"sections"`
}

func (r *results) section(name, note string) *section {
	for _, s := range r.Sections {
		if s.Name == name {
			return s
		}
	}
	s := &section{Name: name, Note: note}
	r.Sections = append(r.Sections, s)
	return s
}

func (s *section) method(name string, peer bool, command string) *method {
	for _, m := range s.Methods {
		if m.Name == name {
			return m
		}
	}
	m := &method{Name: name, Peer: peer, Command: command}
	s.Methods = append(s.Methods, m)
	return m
}

// add records one run of the method called name.
func (s *section) add(run sample, name string, peer bool, command string) {
	m := s.method(name, peer, command)
	m.Runs = append(m.Runs, run)
}

func (s *section) find(name string) *method {
	for _, m := range s.Methods {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize computes every method's medians.
func (m *method) summarize() {
	m.Median = map[string]float64{}
	col := func(k string, f func(sample) (float64, bool)) {
		var v []float64
		for _, s := range m.Runs {
			if x, ok := f(s); ok {
				v = append(v, x)
			}
		}
		if len(v) > 0 {
			m.Median[k] = median(v)
		}
	}
	col("seconds", func(s sample) (float64, bool) { return s.Seconds, s.Seconds > 0 })
	col("raw_mib_per_s", func(s sample) (float64, bool) {
		return float64(s.RawBytes) / (1 << 20) / s.Seconds, s.RawBytes > 0 && s.Seconds > 0
	})
	col("stored_mib", func(s sample) (float64, bool) { return float64(s.StoredBytes) / (1 << 20), s.StoredBytes > 0 })
	col("cpu_seconds", func(s sample) (float64, bool) { return s.CPU, s.CPU > 0 })
	col("agent_cpu_seconds", func(s sample) (float64, bool) { return s.AgentCPU, s.AgentCPU > 0 })
	col("tool_cpu_seconds", func(s sample) (float64, bool) { return s.ToolCPU, s.ToolCPU > 0 })
	col("worker_cpu_seconds", func(s sample) (float64, bool) { return s.WorkerCPU, s.WorkerCPU > 0 })
	col("source_server_cpu_seconds", func(s sample) (float64, bool) { return s.ServerCPU, s.ServerCPU > 0 })
	col("peak_mib", func(s sample) (float64, bool) { return s.PeakMiB, s.PeakMiB > 0 })
	keys := map[string]bool{}
	for _, s := range m.Runs {
		for k := range s.Extra {
			keys[k] = true
		}
	}
	for k := range keys {
		col(k, func(s sample) (float64, bool) { v, ok := s.Extra[k]; return v, ok })
	}
}

// ratio records Strata's median over the peer's for metric.
func (s *section) ratio(metric, strata, peer string) {
	a, b := s.find(strata), s.find(peer)
	if a == nil || b == nil {
		return
	}
	x, okA := a.Median[metric]
	y, okB := b.Median[metric]
	if !okA || !okB || y == 0 {
		return
	}
	if s.Ratios == nil {
		s.Ratios = map[string]float64{}
	}
	s.Ratios[fmt.Sprintf("%s: %s / %s", metric, strata, peer)] = x / y
}

// print writes the sections as tables of medians, methods side by side.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\n== make bench: %s ==\n", r.Date)
	for _, k := range sortedKeys(r.Settings) {
		fmt.Fprintf(w, "  %s: %s\n", k, r.Settings[k])
	}
	for _, s := range r.Sections {
		fmt.Fprintf(w, "\n-- %s", s.Name)
		if s.Note != "" {
			fmt.Fprintf(w, " (%s)", s.Note)
		}
		fmt.Fprintln(w)
		metrics := map[string]bool{}
		for _, m := range s.Methods {
			for k := range m.Median {
				metrics[k] = true
			}
		}
		keys := sortedKeys(metrics)
		fmt.Fprintf(w, "  %-28s", "median of runs")
		for _, m := range s.Methods {
			fmt.Fprintf(w, " %22s", trim(m.Name, 22))
		}
		fmt.Fprintln(w)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-28s", trim(k, 28))
			for _, m := range s.Methods {
				if v, ok := m.Median[k]; ok {
					fmt.Fprintf(w, " %22s", num(v))
				} else {
					fmt.Fprintf(w, " %22s", "-")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "  %-28s", "runs")
		for _, m := range s.Methods {
			fmt.Fprintf(w, " %22d", len(m.Runs))
		}
		fmt.Fprintln(w)
		for _, k := range sortedKeys(s.Ratios) {
			fmt.Fprintf(w, "  ratio %-60s %6.2f×\n", k, s.Ratios[k])
		}
	}
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
