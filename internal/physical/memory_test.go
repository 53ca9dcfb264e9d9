package physical

import "testing"

func TestPrepareMemoryFor(t *testing.T) {
	const mib, gib = int64(1) << 20, int64(1) << 30
	for _, c := range []struct {
		name        string
		total, free int64
		want        int64
	}{
		{"idle 24 GiB host: a quarter of it", 24 * gib, 23 * gib, 6 * gib},
		{"host whose server holds most memory: half of what is free", 64 * gib, 6 * gib, 3 * gib},
		{"large host: capped", 512 * gib, 500 * gib, 16 * gib},
		{"small host: the floor", 512 * mib, 300 * mib, 256 * mib},
		{"nothing known: the floor", 0, 0, 256 * mib},
		{"only the total known", 8 * gib, 0, 2 * gib},
	} {
		if got := PrepareMemoryFor(c.total, c.free); got != c.want {
			t.Errorf("%s: PrepareMemoryFor(%d, %d) = %d MiB, want %d MiB", c.name, c.total, c.free, got>>20, c.want>>20)
		}
	}
	if got := PrepareMemory(123 << 20); got != 123<<20 {
		t.Errorf("a configured prepare_memory is used as is, got %d", got)
	}
	if got := PrepareMemory(0); got < minPrepareMemory || got > maxPrepareMemory {
		t.Errorf("PrepareMemory(0) = %d, out of bounds", got)
	}
}
