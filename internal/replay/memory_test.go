package replay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/hostmem"
)

func meminfo(availKB int64) []byte {
	return []byte(fmt.Sprintf("MemTotal:       99999999 kB\nMemFree:         1000 kB\nMemAvailable:   %d kB\nBuffers:  1 kB\n", availKB))
}

func TestDefaultBufferPool(t *testing.T) {
	const MiB, GiB = int64(1) << 20, int64(1) << 30
	for name, tc := range map[string]struct {
		meminfo []byte
		readErr error
		data    int64
		want    int64
		rule    string
	}{
		// 24 GiB available: half less 512 MiB = 11.5 GiB, more than the data.
		"bounded by the data":          {meminfo(24 << 20), nil, 2156 * MiB, 2176 * MiB, "2176MiB: the datadir's InnoDB files (2156MiB)"},
		"data unknown":                 {meminfo(24 << 20), nil, 0, 11*GiB + 512*MiB, "11776MiB: half of MemAvailable 24576MiB less 512MiB headroom"},
		"bounded by the host":          {meminfo(8 << 20), nil, 100 * GiB, 3*GiB + 512*MiB, "half of MemAvailable 8192MiB"},
		"rounded down to 128MiB":       {meminfo(3<<20 + 100<<10), nil, 0, 1024 * MiB, "1024MiB: half of MemAvailable 3172MiB"},
		"data rounded up to 128MiB":    {meminfo(24 << 20), nil, 1, 128 * MiB, "128MiB: the datadir's InnoDB files (0MiB)"},
		"tiny host":                    {meminfo(600 << 10), nil, 10 * GiB, 128 * MiB, "128MiB (MariaDB's default), more than half of MemAvailable 600MiB"},
		"nothing available":            {meminfo(0), nil, 10 * GiB, 128 * MiB, "128MiB (MariaDB's default)"},
		"huge host":                    {meminfo(4 << 30), nil, 3 << 40, 2*1024*GiB - 512*MiB, "2096640MiB: half of MemAvailable 4194304MiB"},
		"huge host, small data":        {meminfo(4 << 30), nil, 10 * GiB, 10 * GiB, "10240MiB: the datadir's InnoDB files"},
		"unreadable meminfo":           {nil, errors.New("open /proc/meminfo: permission denied"), 10 * GiB, 128 * MiB, "the host's memory is unknown: open /proc/meminfo: permission denied"},
		"no MemAvailable (old kernel)": {[]byte("MemTotal: 1000 kB\nMemFree: 10 kB\n"), nil, 10 * GiB, 128 * MiB, "no MemAvailable line"},
		"malformed MemAvailable":       {[]byte("MemAvailable: lots\n"), nil, 10 * GiB, 128 * MiB, "malformed MemAvailable"},
		"MemAvailable in MB":           {[]byte("MemAvailable: 1000 MB\n"), nil, 10 * GiB, 128 * MiB, "malformed MemAvailable"},
		"absurd MemAvailable":          {[]byte("MemAvailable: 99999999999999999999 kB\n"), nil, 10 * GiB, 128 * MiB, "malformed MemAvailable"},
	} {
		t.Run(name, func(t *testing.T) {
			mem, err := hostmem.Parse(tc.meminfo)
			if tc.readErr != nil {
				err = fmt.Errorf("the host's memory is unknown: %w", tc.readErr)
			}
			p := DefaultBufferPool(mem, err, tc.data)
			assert.Equal(t, tc.want, p.Bytes, p.Rule)
			assert.Contains(t, p.Rule, tc.rule)
			assert.Zero(t, p.Bytes%(128*MiB), "a multiple of the chunk size")
			assert.GreaterOrEqual(t, p.Bytes, int64(MinBufferPool))
		})
	}
}

func TestInnoDBBytes(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o600))
	}
	write("ibdata1", 1000)
	write("undo001", 100)
	write("db/t.ibd", 10)
	write("db/t.frm", 5000)
	write("ib_logfile0", 5000)
	write("binlog.000001", 5000)
	assert.Equal(t, int64(1110), InnoDBBytes(dir))
	assert.Zero(t, InnoDBBytes(filepath.Join(dir, "missing")))
}
