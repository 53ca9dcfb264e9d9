package config

// Fleet holds limits that hold over all agents together. They are enforced
// by limiter workflows on Temporal (workflows.LimiterWorkflow), not by any
// one process.
type Fleet struct {
	// MaxConcurrentBackups bounds the backups running at once over the
	// whole fleet; 0 = no limit.
	MaxConcurrentBackups int `yaml:"max_concurrent_backups"`
	// MaxConcurrentRestores bounds the restores running at once over the
	// whole fleet; 0 = no limit.
	MaxConcurrentRestores int `yaml:"max_concurrent_restores"`
}

// maxFleetConcurrent is the highest fleet-wide limit accepted: above it a
// limit means nothing on any fleet Strata is built for; use 0 for none.
const maxFleetConcurrent = 100000

// Target names the storage target, for its limiter's workflow id:
// "local:<root>" or "gcs:<bucket>/<prefix>".
func (s Storage) Target() string {
	if s.Type == "gcs" {
		return "gcs:" + s.GCS.Bucket + "/" + s.GCS.Prefix
	}
	return s.Type + ":" + s.Local.Root
}

func (c *Config) validateFleet(bad func(key, format string, a ...any)) {
	for _, l := range []struct {
		key string
		v   int
	}{
		{"fleet.max_concurrent_backups", c.Fleet.MaxConcurrentBackups},
		{"fleet.max_concurrent_restores", c.Fleet.MaxConcurrentRestores},
		{"storage.max_concurrent", c.Storage.MaxConcurrent},
	} {
		if l.v < 0 || l.v > maxFleetConcurrent {
			bad(l.key, "%d is out of range (0 = no limit, else 1-%d at once over the fleet)", l.v, maxFleetConcurrent)
		}
	}
}
