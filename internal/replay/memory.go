package replay

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/strata-backup/strata/internal/hostmem"
)

// Bounds of the replay server's buffer pool.
const (
	// MinBufferPool is MariaDB's own default: the derived pool is never
	// less, even on a host that reports less memory available (a
	// configured archive.replay_memory may be, down to 32MiB).
	MinBufferPool = 128 << 20
	// poolUnit is innodb_buffer_pool_chunk_size's default: the server
	// rounds the pool up to a multiple of it anyway.
	poolUnit = 128 << 20
	// poolHeadroom is left to the agent, the kernel and the replay
	// server's other memory (log buffer, threads, the applier's queues).
	poolHeadroom = 512 << 20
)

// Pool is the buffer pool a replay server runs with and why.
type Pool struct {
	Bytes int64  `json:"bytes"`
	Rule  string `json:"rule"` // how it was chosen, for the log
}

// DefaultBufferPool is the buffer pool of a replay server when none is
// configured: half of the host's available memory (hostmem.Read: its
// MemAvailable, capped by the cgroup) less 512 MiB of headroom, rounded
// down to 128 MiB, but no more than the datadir's InnoDB files (dataBytes
// rounded up to 128 MiB; a larger pool is never filled) and no less than
// MariaDB's default, 128 MiB. With memErr set (the host's memory is
// unknown) the pool is the 128 MiB default. dataBytes ≤ 0 means unknown:
// no data bound.
func DefaultBufferPool(mem hostmem.Memory, memErr error, dataBytes int64) Pool {
	if memErr != nil {
		return Pool{MinBufferPool, fmt.Sprintf("128MiB (MariaDB's default): %v", memErr)}
	}
	avail := mem.Available
	budget := (avail/2 - poolHeadroom) / poolUnit * poolUnit
	rule := fmt.Sprintf("half of MemAvailable %dMiB less %dMiB headroom", avail>>20, poolHeadroom>>20)
	pool := budget
	if dataBytes > 0 {
		if capped := (dataBytes + poolUnit - 1) / poolUnit * poolUnit; capped < pool {
			pool, rule = capped, fmt.Sprintf("the datadir's InnoDB files (%dMiB), less than %s", dataBytes>>20, rule)
		}
	}
	if pool < MinBufferPool {
		pool, rule = MinBufferPool, fmt.Sprintf("128MiB (MariaDB's default), more than %s", rule)
	}
	return Pool{pool, fmt.Sprintf("%dMiB: %s", pool>>20, rule)}
}

// HostBufferPool is DefaultBufferPool for this host and datadir.
func HostBufferPool(datadir string) Pool {
	mem, err := hostmem.Read()
	return DefaultBufferPool(mem, err, InnoDBBytes(datadir))
}

// InnoDBBytes is the size of the InnoDB files in datadir: the tablespaces
// (*.ibd), the system and undo tablespaces; 0 when none is found.
func InnoDBBytes(datadir string) int64 {
	var n int64
	_ = filepath.WalkDir(datadir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.Type().IsRegular() && (strings.HasSuffix(name, ".ibd") || strings.HasPrefix(name, "ibdata") || strings.HasPrefix(name, "undo")) {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
