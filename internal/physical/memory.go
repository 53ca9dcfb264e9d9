package physical

import (
	"os"
	"strconv"
	"strings"
)

// Bounds of the prepare memory derived from the host.
const (
	minPrepareMemory = 256 << 20
	maxPrepareMemory = 16 << 30
)

// PrepareMemory is the --use-memory of a restore's --prepare: configured
// when it is set (> 0), otherwise derived from this host (see
// PrepareMemoryFor) from /proc/meminfo and, in a container, the cgroup's
// memory limit.
func PrepareMemory(configured int64) int64 {
	if configured > 0 {
		return configured
	}
	total, avail := hostMemory()
	return PrepareMemoryFor(total, avail)
}

// PrepareMemoryFor derives the prepare memory from a host's total and
// available memory (bytes; 0: unknown) as a DBA sizes it on a host that
// may also run a server: half of what is available, at most a quarter of
// the total, within 256 MiB and 16 GiB (256 MiB when nothing is known).
func PrepareMemoryFor(total, avail int64) int64 {
	m := int64(maxPrepareMemory)
	if avail > 0 {
		m = min(m, avail/2)
	}
	if total > 0 {
		m = min(m, total/4)
	}
	if total <= 0 && avail <= 0 {
		m = minPrepareMemory
	}
	return max(m, minPrepareMemory)
}

// hostMemory returns this host's total and available memory, each capped
// by the cgroup (v2) limit of the process when it has one; 0: unknown.
func hostMemory() (total, avail int64) {
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		total, avail = meminfo(string(b), "MemTotal:"), meminfo(string(b), "MemAvailable:")
	}
	if limit, ok := cgroupBytes("memory.max"); ok {
		used, _ := cgroupBytes("memory.current")
		total = minKnown(total, limit)
		avail = minKnown(avail, max(limit-used, 0))
	}
	return total, avail
}

func minKnown(a, b int64) int64 {
	if a <= 0 {
		return b
	}
	return min(a, b)
}

// meminfo returns the bytes of one /proc/meminfo field (0: absent).
func meminfo(data, field string) int64 {
	for _, line := range strings.Split(data, "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil && n > 0 {
					return n << 10
				}
			}
		}
	}
	return 0
}

// cgroupBytes reads a byte count of this process's cgroup v2 (false when
// there is none, or no limit: "max").
func cgroupBytes(name string) (int64, bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	path, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok || strings.Contains(path, "\n") {
		return 0, false
	}
	v, err := os.ReadFile("/sys/fs/cgroup" + path + "/" + name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	return n, err == nil && n > 0
}
