package physical

import "github.com/strata-backup/strata/internal/hostmem"

// Bounds of the prepare memory derived from the host.
const (
	minPrepareMemory = 256 << 20
	maxPrepareMemory = 16 << 30
)

// PrepareMemory is the --use-memory of a restore's --prepare: configured
// when it is set (> 0), otherwise derived from this host (see
// PrepareMemoryFor) by hostmem.Read.
func PrepareMemory(configured int64) int64 {
	if configured > 0 {
		return configured
	}
	m, _ := hostmem.Read() // unknown: zeros, the floor
	return PrepareMemoryFor(m.Total, m.Available)
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
