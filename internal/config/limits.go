package config

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/strata-backup/strata/internal/hostmem"
)

// The retry policy of the workflows' activities (workflows/options.go):
// how many attempts one activity, a backup among them, gets, and the
// backoff between them. MaxBackupSpan is computed from it.
const (
	ActivityAttempts     = 5
	RetryInitialInterval = 5 * time.Second
	RetryBackoff         = 2
	RetryMaxInterval     = 2 * time.Minute
)

// Bounds of the settings whose values cannot work outside them.
const (
	minAgentStartTimeout = 5 * time.Second
	maxAgentStartTimeout = 24 * time.Hour
	maxHeartbeatTimeout  = 10 * time.Minute
	minBackupTimeout     = time.Minute
	maxBackupTimeout     = 30 * 24 * time.Hour
	maxConcurrent        = 64
	minUseMemory         = 16 << 20
	maxUseMemory         = 1 << 40
	// MinReplayMemory is the smallest archive.replay_memory, MaxReplayThreads
	// the most archive.replay_threads (slave_parallel_threads' own limit).
	MinReplayMemory  = 32 << 20
	MaxReplayThreads = 16383
)

// oneDocument refuses a second YAML document (after `---`): Strata reads
// only the first, so settings in a later one would be silently ignored. An
// empty trailing document is harmless.
func oneDocument(dec *yaml.Decoder) error {
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parse: %w", err)
		}
		if len(n.Content) == 0 || n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
			continue
		}
		what := ""
		if m := n.Content[0]; m.Kind == yaml.MappingNode {
			var keys []string
			for i := 0; i+1 < len(m.Content); i += 2 {
				keys = append(keys, m.Content[i].Value)
			}
			what = " (with keys " + strings.Join(keys, ", ") + ")"
		}
		return fmt.Errorf("parse: line %d: a second YAML document%s follows `---`: the config is one document, and a second one would be ignored; merge it into the first", n.Content[0].Line, what)
	}
}

// MaxBackupSpan is the longest one backup of in can take from its first
// attempt to the end of its last: every attempt waits for an agent
// (temporal.agent_start_timeout) and runs up to backup.timeout, with the
// retry backoff in between.
func (c *Config) MaxBackupSpan(in *Instance) time.Duration {
	per := c.Temporal.AgentStartTimeout.Std() + in.Backup.BackupTimeout.Std()
	span := time.Duration(ActivityAttempts) * per
	wait := RetryInitialInterval
	for i := 1; i < ActivityAttempts; i++ {
		span += min(wait, RetryMaxInterval)
		wait *= RetryBackoff
	}
	return span
}

// defaultPartialGrace is MaxBackupSpan plus an hour, rounded up to hours,
// at least 24h.
func (c *Config) defaultPartialGrace(in *Instance) time.Duration {
	g := (c.MaxBackupSpan(in) + time.Hour + time.Hour - 1).Truncate(time.Hour)
	return max(g, 24*time.Hour)
}

// validatePartialGrace checks that a partial upload is never old enough for
// the cleanup while its backup may still run: the lease protects a running
// attempt, and the grace must cover the rest (an agent that died holding
// it, the pauses between attempts, chunks reused from an earlier attempt).
func (c *Config) validatePartialGrace(key string, in *Instance, bad func(key, format string, a ...any)) {
	if in.Backup.BackupTimeout <= 0 || c.Temporal.AgentStartTimeout <= 0 {
		return // reported as such
	}
	span := c.MaxBackupSpan(in)
	if g := in.Retention.PartialGrace.Std(); g <= span {
		bad(key+".retention.partial_grace", "%v is not longer than one backup of this instance can take: %d attempts × (backup.timeout %v + temporal.agent_start_timeout %v) plus retry backoff = %v; raise partial_grace (or the top-level retention.partial_grace) above %v, or lower backup.timeout",
			g, ActivityAttempts, in.Backup.BackupTimeout.Std(), c.Temporal.AgentStartTimeout.Std(), span, span)
	}
}

// validateLimits checks settings that are well-formed but cannot work.
func (c *Config) validateLimits(bad func(key, format string, a ...any)) {
	t := &c.Temporal
	if d := t.AgentStartTimeout.Std(); d < minAgentStartTimeout || d > maxAgentStartTimeout {
		bad("temporal.agent_start_timeout", "%v is out of range (%v to %v)", d, minAgentStartTimeout, maxAgentStartTimeout)
	}
	if d := t.HeartbeatTimeout.Std(); d > maxHeartbeatTimeout {
		bad("temporal.heartbeat_timeout", "%v is too long: a dead agent would go unnoticed that long; use at most %v", d, maxHeartbeatTimeout)
	}
	validateBackupLimits("defaults", &c.Defaults, bad)
	for i := range c.Instances {
		in := &c.Instances[i]
		key := fmt.Sprintf("instances[%d]", i)
		if in.ID != "" {
			key = fmt.Sprintf("instances[%d] (%s)", i, in.ID)
		}
		validateBackupLimits(key+".backup", &in.Backup, bad)
	}
}

func validateBackupLimits(key string, b *Backup, bad func(key, format string, a ...any)) {
	if d := b.BackupTimeout.Std(); d < minBackupTimeout || d > maxBackupTimeout {
		bad(key+".timeout", "%v is out of range (%v to %v)", d, minBackupTimeout, maxBackupTimeout)
	}
	if b.UseMemory != 0 && (b.UseMemory < minUseMemory || b.UseMemory > maxUseMemory) {
		bad(key+".prepare_memory", "%s is out of range (%s to %s)", b.UseMemory, ByteSize(minUseMemory), ByteSize(maxUseMemory))
	}
}

// PipelineMemory is the most memory the upload pipeline of one backup of
// in holds: (2 × parallelism + 1) × chunk_size (see pipeline.UploadOptions).
func PipelineMemory(in *Instance) int64 {
	return (2*int64(in.Backup.Parallelism) + 1) * int64(in.Backup.ChunkSize)
}

// CheckHostMemory checks the instances that host backs up against the
// memory of its machine, total bytes: agent.max_concurrent backups at once,
// each holding PipelineMemory, and a restore's --prepare with
// prepare_memory, must fit. The agent calls it at start.
func (c *Config) CheckHostMemory(host string, total int64) error {
	var errs []string
	for i := range c.Instances {
		in := &c.Instances[i]
		if in.Host != host {
			continue
		}
		key := fmt.Sprintf("instances[%d] (%s).backup", i, in.ID)
		need := PipelineMemory(in) * int64(max(1, c.Agent.MaxConcurrentHeavy))
		if need > total {
			errs = append(errs, fmt.Sprintf("%s.chunk_size: %s × (2 × parallelism %d + 1) × agent.max_concurrent %d = %s of upload buffers is more than this machine's memory (%s); lower chunk_size, parallelism or agent.max_concurrent",
				key, in.Backup.ChunkSize, in.Backup.Parallelism, max(1, c.Agent.MaxConcurrentHeavy), ByteSize(need), ByteSize(total)))
		}
		if int64(in.Backup.UseMemory) > total {
			errs = append(errs, fmt.Sprintf("%s.prepare_memory: %s is more than this machine's memory (%s); lower it", key, in.Backup.UseMemory, ByteSize(total)))
		}
		if m := in.Archive.ReplayMemory; int64(m) > total {
			errs = append(errs, fmt.Sprintf("instances[%d] (%s).archive.replay_memory: %s is more than this machine's memory (%s); lower it, or 0 to derive it from the host", i, in.ID, m, ByteSize(total)))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration for host %s:\n  %s", host, strings.Join(errs, "\n  "))
	}
	return nil
}

// MachineMemory returns the total memory of this machine in bytes
// (hostmem.Read: /proc/meminfo, capped by the cgroup's limit).
func MachineMemory() (int64, error) {
	m, err := hostmem.Read()
	if err != nil {
		return 0, fmt.Errorf("read the machine's memory: %w", err)
	}
	if m.Total <= 0 {
		return 0, errors.New("read the machine's memory: /proc/meminfo has no MemTotal line")
	}
	return m.Total, nil
}
