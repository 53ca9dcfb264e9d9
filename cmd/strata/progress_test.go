package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"

	"github.com/strata-backup/strata/activities"
)

func TestFormatETA(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		45 * time.Second:                      "45s",
		59*time.Second + 600*time.Millisecond: "1m00s",
		3*time.Minute + 7*time.Second:         "3m07s",
		2*time.Hour + 5*time.Minute + 59*time.Second: "2h05m",
	} {
		assert.Equal(t, want, formatETA(d), "%v", d)
	}
}

func TestETA(t *testing.T) {
	d, ok := eta(100<<20, 400<<20, 10<<20) // 300 MiB left at 10 MiB/s
	require.True(t, ok)
	assert.Equal(t, 30*time.Second, d)
	for _, c := range []struct {
		bytes, total int64
		rate         float64
	}{{1, 0, 5}, {1, 10, 0}, {10, 10, 5}, {11, 10, 5}} {
		_, ok := eta(c.bytes, c.total, c.rate)
		assert.False(t, ok, "%+v: no ETA without a total, a rate, or past the total", c)
	}
}

func TestRateMeterSmoothsAndResetsOnPhase(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1000, 0)
	assert.Zero(t, m.observe("streaming", 0, t0), "one sample is no rate")
	assert.InDelta(t, 10e6, m.observe("streaming", 10e6, t0.Add(time.Second)), 1)
	// A burst moves the average by 30%, not all the way.
	assert.InDelta(t, 0.3*30e6+0.7*10e6, m.observe("streaming", 40e6, t0.Add(2*time.Second)), 1)
	// Same instant: the rate stays.
	assert.InDelta(t, 16e6, m.observe("streaming", 40e6, t0.Add(2*time.Second)), 1)
	assert.Zero(t, m.observe("writing manifest", 40e6, t0.Add(3*time.Second)), "a new phase starts over")
	assert.Zero(t, m.observe("writing manifest", 1, t0.Add(4*time.Second)), "counters going back (a retry) start over")
}

func TestDecodeProgressFromHeartbeats(t *testing.T) {
	dc := converter.GetDefaultDataConverter()
	pl, err := dc.ToPayloads(activities.BackupProgress{Phase: "streaming", Chunks: 3, RawBytes: 3 << 20, StoredBytes: 1 << 20})
	require.NoError(t, err)
	p := decodeProgress("Backup", pl)
	assert.Equal(t, "streaming", p.Phase)
	assert.EqualValues(t, 3<<20, p.Bytes)

	pl, _ = dc.ToPayloads(activities.RestoreProgress{Phase: "preparing", BackupID: "b2"})
	p = decodeProgress("RestoreBackup", pl)
	assert.Equal(t, "preparing", p.Phase)
	assert.Equal(t, "b2", p.Detail)

	pl, _ = dc.ToPayloads(activities.VerifyProgress{BackupID: "b1", Done: 2, Total: 5})
	p = decodeProgress("VerifyBackups", pl)
	assert.Equal(t, 2, p.Done)
	assert.Equal(t, 5, p.Items)

	pl, _ = dc.ToPayloads("applying binlogs")
	assert.Equal(t, "applying binlogs", decodeProgress("ReplayBinlogs", pl).Phase)
	assert.Equal(t, "scheduled", decodeProgress("Backup", nil).Phase, "no heartbeat yet")
}

func TestProgressLines(t *testing.T) {
	p := progress{Activity: "Backup", Phase: "streaming", Bytes: 100 << 20, Total: 400 << 20}
	line := plainLine(p, 10<<20, 65*time.Second)
	assert.Equal(t, "[1m05s] streaming: 100.0MiB of ~400.0MiB, 10.0MiB/s, ETA 30s", line)

	p.Attempt, p.Retrying = 2, "connection refused"
	assert.Equal(t, "[1m05s] streaming: 100.0MiB of ~400.0MiB, 10.0MiB/s, ETA 30s (attempt 2, last failure: connection refused)",
		plainLine(p, 10<<20, 65*time.Second))

	unknown := progress{Phase: "streaming", Bytes: 5 << 20}
	assert.Equal(t, "[3s] streaming: 5.0MiB, 1.0MiB/s", plainLine(unknown, 1<<20, 3*time.Second), "no total: no ETA")

	v := progress{Phase: "verifying", Detail: "b1", Done: 1, Items: 4}
	assert.Equal(t, "[0s] verifying b1: 1 of 4 backups", plainLine(v, 0, 0))

	bar := barLine(progress{Phase: "streaming", Bytes: 100 << 20, Total: 400 << 20}, 10<<20, 65*time.Second, 100)
	assert.LessOrEqual(t, len(bar), 100)
	assert.Contains(t, bar, " 25% ")
	open, closing := strings.Index(bar, "["), strings.Index(bar, "]")
	require.True(t, open > 0 && closing > open, bar)
	inner := bar[open+1 : closing]
	assert.Equal(t, len(inner)/4, strings.Count(inner, "="), "a quarter of the bar is filled: %q", bar)
	assert.GreaterOrEqual(t, len(inner), 10)
	assert.Contains(t, bar, "ETA 30s")
	assert.NotContains(t, barLine(unknown, 1<<20, time.Second, 100), "[", "no bar without a fraction")
	assert.LessOrEqual(t, len(barLine(p, 10<<20, time.Second, 30)), 30, "cut to the terminal's width")
}

// Off a terminal, the follower prints a line per phase and at most one per
// plainEvery within a phase, with no escapes.
func TestFollowerPlainOutput(t *testing.T) {
	var out bytes.Buffer
	f := &follower{out: &out, width: 100, plainEvery: 10 * time.Second, total: 40 << 20}
	t0 := time.Unix(1000, 0)
	f.show(progress{Phase: "starting"}, t0)
	f.show(progress{Phase: "streaming", Bytes: 0}, t0.Add(time.Second))
	f.show(progress{Phase: "streaming", Bytes: 10 << 20}, t0.Add(2*time.Second)) // within 10s: not printed
	f.show(progress{Phase: "streaming", Bytes: 20 << 20}, t0.Add(11*time.Second))
	f.show(progress{Phase: "writing manifest", Bytes: 40 << 20}, t0.Add(12*time.Second))
	f.finish()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 4, out.String())
	assert.Equal(t, "[0s] starting", lines[0])
	assert.Equal(t, "[1s] streaming", lines[1])
	assert.True(t, strings.HasPrefix(lines[2], "[11s] streaming: 20.0MiB of ~40.0MiB, "), lines[2])
	assert.Contains(t, lines[2], "ETA ")
	assert.Equal(t, "[12s] writing manifest: 40.0MiB of ~40.0MiB", lines[3])
	assert.NotContains(t, out.String(), "\r")
	assert.NotContains(t, out.String(), "\x1b")
}

// On a terminal, the line is redrawn in place and ended once.
func TestFollowerTerminalOutput(t *testing.T) {
	var out bytes.Buffer
	f := &follower{out: &out, tty: true, width: 80, plainEvery: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	f.show(progress{Phase: "streaming", Bytes: 1 << 20, Total: 4 << 20}, t0)
	f.show(progress{Phase: "streaming", Bytes: 2 << 20, Total: 4 << 20}, t0.Add(time.Second))
	f.finish()
	s := out.String()
	assert.Equal(t, 2, strings.Count(s, "\r"))
	assert.Equal(t, 2, strings.Count(s, "\x1b[K"))
	assert.True(t, strings.HasSuffix(s, "\n"))
	assert.Equal(t, 1, strings.Count(s, "\n"))
	assert.Contains(t, s, " 50% ")
}
