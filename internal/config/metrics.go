package config

import (
	"fmt"
	"net"
	"time"
)

// DefaultMetricsRefresh is how often the worker recomputes the metrics it
// derives from the catalog and the fleet limiter when
// metrics.refresh_interval is unset. Each refresh costs storage requests
// per instance (docs/metrics.md), for gauges whose alerts have thresholds
// of minutes to hours; a completed workflow refreshes at once anyway.
const DefaultMetricsRefresh = 5 * time.Minute

// Metrics configures the Prometheus endpoints (/metrics) of `strata worker`
// and `strata agent`, see docs/metrics.md. Both are off unless an address
// is set; the commands' --metrics-listen flag overrides the address.
type Metrics struct {
	// Listen is the host:port `strata worker` serves /metrics on, such as
	// "127.0.0.1:9464"; empty = off.
	Listen string `yaml:"listen"`
	// AgentListen is the host:port `strata agent` serves /metrics on, such
	// as "127.0.0.1:9465"; empty = off.
	AgentListen string `yaml:"agent_listen"`
	// RefreshInterval is how often the worker recomputes the gauges it
	// reads from the catalog (last backups, point-in-time window, drills,
	// schedules) and the fleet limiter; default 5m.
	RefreshInterval Duration `yaml:"refresh_interval"`
}

func (m *Metrics) applyDefaults() {
	if m.RefreshInterval == 0 {
		m.RefreshInterval = Duration(DefaultMetricsRefresh)
	}
}

// validate reports the problems of the metrics block.
func (m *Metrics) validate(bad func(key, format string, a ...any)) {
	if err := CheckListen(m.Listen); err != nil {
		bad("metrics.listen", "%v", err)
	}
	if err := CheckListen(m.AgentListen); err != nil {
		bad("metrics.agent_listen", "%v", err)
	}
	if m.RefreshInterval < Duration(time.Second) {
		bad("metrics.refresh_interval", "must be at least 1s")
	}
}

// CheckListen checks a metrics listen address: empty (off) or host:port.
func CheckListen(addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("listen address %q is not host:port (such as 127.0.0.1:9464 or :9464): %w", addr, err)
	}
	return nil
}
