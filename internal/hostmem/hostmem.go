// Package hostmem reads how much memory this host can give: /proc/meminfo,
// capped by the process's cgroup (v2) memory limit when it has one. The
// restore's prepare memory and the replay server's buffer pool are sized
// from it.
package hostmem

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is a host's total and available memory in bytes.
type Memory struct {
	Total     int64 // MemTotal; 0: unknown
	Available int64 // MemAvailable
}

// Parse reads MemTotal and MemAvailable from the content of /proc/meminfo.
// It fails when MemAvailable is absent (kernels before 3.14) or malformed;
// a missing MemTotal is 0.
func Parse(meminfo []byte) (Memory, error) {
	var m Memory
	found := false
	for _, line := range strings.Split(string(meminfo), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "MemTotal" && name != "MemAvailable") {
			continue
		}
		n, ok := kB(rest)
		switch {
		case name == "MemTotal" && ok:
			m.Total = n
		case name == "MemAvailable" && !ok:
			return Memory{}, fmt.Errorf("/proc/meminfo has a malformed MemAvailable line %q", line)
		case name == "MemAvailable":
			m.Available, found = n, true
		}
	}
	if !found {
		return Memory{}, errors.New("/proc/meminfo has no MemAvailable line")
	}
	return m, nil
}

// kB parses " 123 kB" into bytes.
func kB(s string) (int64, bool) {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return 0, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 || n >= 1<<53 {
		return 0, false
	}
	return n << 10, true
}

// Read returns this host's memory, each figure capped by the cgroup's
// limit (memory.max; what is available: the limit less memory.current,
// not counting the inactive file pages of memory.stat, which the kernel
// reclaims before it refuses the cgroup memory: a restore that has just
// written gigabytes fills its cgroup with them).
func Read() (Memory, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return Memory{}, fmt.Errorf("the host's memory is unknown: %w", err)
	}
	m, err := Parse(b)
	if err != nil {
		return Memory{}, err
	}
	if limit, ok := cgroupBytes("memory.max"); ok {
		used, _ := cgroupBytes("memory.current")
		used -= cgroupStat("inactive_file")
		m.Total = minKnown(m.Total, limit)
		m.Available = min(m.Available, max(limit-used, 0))
	}
	return m, nil
}

func minKnown(a, b int64) int64 {
	if a <= 0 {
		return b
	}
	return min(a, b)
}

// cgroupStat reads one field of the cgroup's memory.stat (0: unknown).
func cgroupStat(field string) int64 {
	dir, ok := cgroupDir()
	if !ok {
		return 0
	}
	b, err := os.ReadFile(dir + "/memory.stat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+" "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// cgroupDir is this process's cgroup v2 directory.
func cgroupDir() (string, bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false
	}
	path, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok || strings.Contains(path, "\n") {
		return "", false
	}
	return "/sys/fs/cgroup" + path, true
}

// cgroupBytes reads a byte count of this process's cgroup v2 (false when
// there is none, or no limit: "max").
func cgroupBytes(name string) (int64, bool) {
	dir, ok := cgroupDir()
	if !ok {
		return 0, false
	}
	v, err := os.ReadFile(dir + "/" + name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	return n, err == nil && n > 0
}
