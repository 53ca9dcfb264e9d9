package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/workers"
)

// progress is what `--wait` shows of a running workflow: the phase and
// counters of its running activity, decoded from that activity's latest
// heartbeat details (activities.BackupProgress, RestoreProgress,
// VerifyProgress, or a plain string).
type progress struct {
	Activity string // activity type, e.g. Backup
	Phase    string
	Detail   string // e.g. the chain member a restore applies
	Bytes    int64  // raw bytes so far (0: not a byte-counting phase)
	Total    int64  // expected raw bytes (0: unknown)
	Done     int    // items done, for work counted in items (verify)
	Items    int    // items in all (0: not counted in items)
	Attempt  int32  // of the activity; > 1 after a retry
	Retrying string // last failure when retrying
}

// decodeProgress reads an activity's heartbeat details.
func decodeProgress(activityType string, details *commonpb.Payloads) progress {
	p := progress{Activity: activityType}
	dc := converter.GetDefaultDataConverter()
	get := func(v any) bool { return dc.FromPayloads(details, v) == nil }
	if len(details.GetPayloads()) == 0 {
		p.Phase = "scheduled"
		return p
	}
	switch activityType {
	case "Backup":
		var b activities.BackupProgress
		if get(&b) {
			p.Phase, p.Bytes = b.Phase, b.RawBytes
			return p
		}
	case "RestoreBackup":
		var r activities.RestoreProgress
		if get(&r) {
			p.Phase, p.Bytes, p.Detail = r.Phase, r.RawBytes, r.BackupID
			return p
		}
	case "VerifyBackups":
		var v activities.VerifyProgress
		if get(&v) {
			p.Phase, p.Done, p.Items, p.Detail = "verifying", v.Done, v.Total, v.BackupID
			return p
		}
	}
	var s string
	if get(&s) && s != "" {
		p.Phase = s
	} else {
		p.Phase = "running"
	}
	return p
}

// rateMeter turns byte counts sampled over time into a throughput: an
// exponentially weighted average, so that one slow chunk does not swing
// the ETA.
type rateMeter struct {
	lastBytes int64
	lastAt    time.Time
	phase     string
	rate      float64 // bytes/s; 0 until two samples
}

// observe records bytes at time at and returns the smoothed rate.
func (m *rateMeter) observe(phase string, bytes int64, at time.Time) float64 {
	if phase != m.phase || bytes < m.lastBytes {
		m.phase, m.lastBytes, m.lastAt, m.rate = phase, bytes, at, 0
		return 0
	}
	dt := at.Sub(m.lastAt).Seconds()
	if dt <= 0 {
		return m.rate
	}
	r := float64(bytes-m.lastBytes) / dt
	if m.rate == 0 {
		m.rate = r
	} else {
		m.rate = 0.3*r + 0.7*m.rate
	}
	m.lastBytes, m.lastAt = bytes, at
	return m.rate
}

// eta is the time left at rate for the bytes not done; ok is false when it
// cannot be told (no total, no rate, or past the expected total).
func eta(bytes, total int64, rate float64) (time.Duration, bool) {
	if total <= 0 || rate <= 0 || bytes >= total {
		return 0, false
	}
	return time.Duration(float64(total-bytes) / rate * float64(time.Second)).Round(time.Second), true
}

// formatETA shows a duration as 45s, 3m07s or 2h05m.
func formatETA(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// fraction is how far p is, in [0, 1]; ok is false when unknown.
func (p progress) fraction() (float64, bool) {
	switch {
	case p.Items > 0:
		return min(1, float64(p.Done)/float64(p.Items)), true
	case p.Total > 0 && p.Bytes > 0:
		return min(1, float64(p.Bytes)/float64(p.Total)), true
	}
	return 0, false
}

// counters are the numbers of a progress line: "1.2GiB of ~3.4GiB, 45.3
// MiB/s, ETA 51s" or "2 of 5 backups".
func (p progress) counters(rate float64) string {
	var parts []string
	switch {
	case p.Items > 0:
		parts = append(parts, fmt.Sprintf("%d of %d backups", p.Done, p.Items))
	case p.Bytes > 0:
		s := human(p.Bytes)
		if p.Total > 0 {
			s += " of ~" + human(p.Total)
		}
		parts = append(parts, s)
		if rate > 0 {
			parts = append(parts, human(int64(rate))+"/s")
		}
		if d, ok := eta(p.Bytes, p.Total, rate); ok {
			parts = append(parts, "ETA "+formatETA(d))
		}
	}
	return strings.Join(parts, ", ")
}

// plainLine is a progress line for a log or a pipe: no bar, no escapes.
func plainLine(p progress, rate float64, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", formatETA(elapsed), p.Phase)
	if p.Detail != "" {
		fmt.Fprintf(&b, " %s", p.Detail)
	}
	if c := p.counters(rate); c != "" {
		fmt.Fprintf(&b, ": %s", c)
	}
	if p.Attempt > 1 {
		fmt.Fprintf(&b, " (attempt %d", p.Attempt)
		if p.Retrying != "" {
			fmt.Fprintf(&b, ", last failure: %s", p.Retrying)
		}
		b.WriteString(")")
	}
	return b.String()
}

// barLine is the live line of a terminal, width columns at most: phase, a
// bar of 10 to 40 columns when the fraction is known, the counters, and the
// time elapsed when it fits.
func barLine(p progress, rate float64, elapsed time.Duration, width int) string {
	head := fmt.Sprintf("%-16s", p.Phase)
	tail := p.counters(rate)
	if p.Attempt > 1 {
		tail += fmt.Sprintf(" (attempt %d)", p.Attempt)
	}
	const barExtra = len("[] 100% ")
	if f, ok := p.fraction(); ok {
		n := min(40, width-len(head)-1-len(tail)-barExtra)
		if n >= 10 {
			full := int(f * float64(n))
			head += fmt.Sprintf(" [%s%s] %3d%%", strings.Repeat("=", full), strings.Repeat(" ", n-full), int(f*100))
		}
	}
	line := strings.TrimRight(head+" "+tail, " ")
	if more := "  " + formatETA(elapsed) + " elapsed"; len(line)+len(more) <= width {
		line += more
	}
	if len(line) > width {
		line = line[:width]
	}
	return line
}

// isTerminal says whether f is a terminal (a character device), without a
// terminal library.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// follower polls a running workflow's pending activities and shows their
// progress on out: a bar redrawn in place on a terminal, otherwise a line
// when the phase changes and at most every plainEvery.
type follower struct {
	out        io.Writer
	tty        bool
	width      int
	every      time.Duration // poll interval
	plainEvery time.Duration
	total      int64 // expected raw bytes (0: unknown)

	meter     rateMeter
	started   time.Time
	lastPlain time.Time
	lastPhase string
	drawn     bool
}

func newFollower(out *os.File, total int64) *follower {
	width := 80
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 20 {
		width = n
	}
	return &follower{out: out, tty: isTerminal(out), width: width - 1, every: time.Second, plainEvery: 10 * time.Second, total: total}
}

// show draws one sample taken at now.
func (f *follower) show(p progress, now time.Time) {
	if f.started.IsZero() {
		f.started = now
	}
	if p.Total == 0 {
		p.Total = f.total
	}
	rate := f.meter.observe(p.Phase, p.Bytes, now)
	elapsed := now.Sub(f.started)
	if f.tty {
		fmt.Fprintf(f.out, "\r%s\x1b[K", barLine(p, rate, elapsed, f.width))
		f.drawn = true
		return
	}
	if p.Phase == f.lastPhase && now.Sub(f.lastPlain) < f.plainEvery {
		return
	}
	f.lastPhase, f.lastPlain = p.Phase, now
	fmt.Fprintln(f.out, plainLine(p, rate, elapsed))
}

// finish ends a live line.
func (f *follower) finish() {
	if f.tty && f.drawn {
		fmt.Fprintln(f.out)
	}
}

// run polls workflow id until ctx ends.
func (f *follower) run(ctx context.Context, c client.Client, id, runID string) {
	defer f.finish()
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		if d, err := c.DescribeWorkflowExecution(ctx, id, runID); err == nil {
			for _, pa := range d.GetPendingActivities() {
				p := decodeProgress(pa.GetActivityType().GetName(), pa.GetHeartbeatDetails())
				p.Attempt = pa.GetAttempt()
				if lf := pa.GetLastFailure(); lf != nil {
					p.Retrying = lf.GetMessage()
				}
				f.show(p, time.Now())
				break // the workflows here run one activity at a time
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expectedBackupBytes estimates a backup's raw size for the ETA: the size
// of instance's newest backup of the same type (0 when there is none or
// the repository cannot be read: the progress then shows no ETA).
func expectedBackupBytes(ctx context.Context, a *app, instance, typ string) int64 {
	r, err := workers.OpenRepo(ctx, a.cfg)
	if err != nil {
		return 0
	}
	ms, err := r.ListBackups(ctx, instance)
	if err != nil {
		return 0
	}
	var n int64
	var at time.Time
	for _, m := range ms {
		if m.Type == typ && !m.StartTime.Before(at) {
			n, at = m.RawSize, m.StartTime
		}
	}
	return n
}

// expectedRestoreBytes is the raw size of the chain a restore of backupID
// applies (0: unknown).
func expectedRestoreBytes(ctx context.Context, a *app, instance, backupID string) int64 {
	if backupID == "" {
		return 0
	}
	r, err := workers.OpenRepo(ctx, a.cfg)
	if err != nil {
		return 0
	}
	ms, err := r.ListBackups(ctx, instance)
	if err != nil {
		return 0
	}
	chain, err := repo.Chain(ms, backupID)
	if err != nil {
		return 0
	}
	var n int64
	for _, m := range chain {
		n += m.RawSize
	}
	return n
}
