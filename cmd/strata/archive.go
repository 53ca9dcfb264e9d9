package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

func archiveCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "archive", Short: "Continuous binlog archiving (BinlogArchiveWorkflow, one per instance)"}
	start := &cobra.Command{
		Use:   "start INSTANCE",
		Short: "Start archiving an instance's binlogs (workflow id archive/INSTANCE)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.loadFor(args[0])
			if err != nil {
				return err
			}
			_, err = a.start(cmd.Context(), workflows.ArchiveWorkflowID(args[0]), workflows.ArchiveWorkflowName, workflows.ArchiveRequest{Instance: args[0]}, false, nil,
				workflows.SearchAttributes(args[0], workflows.KindArchive, "", in.Host))
			var already *serviceerror.WorkflowExecutionAlreadyStarted
			if errors.As(err, &already) {
				return fmt.Errorf("binlog archiving of %s is already running (strata archive status %s)", args[0], args[0])
			}
			return err
		},
	}
	stop := &cobra.Command{
		Use:   "stop INSTANCE",
		Short: "Stop archiving: the agent writes what it holds, then the workflow ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dialFor(args[0])
			if err != nil {
				return err
			}
			defer c.Close()
			id := workflows.ArchiveWorkflowID(args[0])
			if err := c.SignalWorkflow(cmd.Context(), id, "", workflows.ArchiveStopSignal, nil); err != nil {
				return fmt.Errorf("stop %s: %w (is archiving running? strata archive status %s)", id, err, args[0])
			}
			var st workflows.ArchiveState
			if err := c.GetWorkflow(cmd.Context(), id, "").Get(cmd.Context(), &st); err != nil {
				return err
			}
			fmt.Printf("binlog archiving of %s stopped at %s:%d (GTID %s)\n", args[0], st.Last.File, st.Last.Pos, st.Last.LastGTID)
			return nil
		},
	}
	var asJS bool
	status := &cobra.Command{
		Use:   "status INSTANCE",
		Short: "Show the archiver's position and lag, the recovery windows and any gaps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.openRepoFor(cmd, args[0])
			if err != nil {
				return err
			}
			rep := archiveReport{Instance: args[0]}
			if err := rep.fromRepo(cmd.Context(), r, args[0]); err != nil {
				return err
			}
			if err := rep.billFromRepo(cmd.Context(), r, args[0]); err != nil {
				return err
			}
			rep.fromTemporal(cmd.Context(), a, args[0])
			if asJS {
				return printJSON(rep)
			}
			rep.print()
			return nil
		},
	}
	status.Flags().BoolVar(&asJS, "json", false, "print as JSON")
	cmd.AddCommand(start, stop, status)
	return cmd
}

// archiveReport is what `strata archive status` shows.
type archiveReport struct {
	Instance    string                  `json:"instance"`
	State       string                  `json:"state"` // running, stopped, not started, unknown
	Workflow    *workflows.ArchiveState `json:"workflow,omitempty"`
	Live        *binlog.Status          `json:"live,omitempty"` // latest heartbeat of the running archiver
	Segments    int                     `json:"segments"`
	Bytes       int64                   `json:"bytes"`
	Last        *binlog.Segment         `json:"last_segment,omitempty"`
	Windows     []binlog.Window         `json:"windows"`
	Gaps        []binlog.Gap            `json:"gaps"`
	LagMs       float64                 `json:"lag_ms"` // now - newest event received, when events are pending
	TemporalErr string                  `json:"temporal_error,omitempty"`
	// LastFailure is the latest failed attempt of the running archiver
	// (retried by Temporal), e.g. a missing REPLICATION SLAVE grant.
	LastFailure string `json:"last_failure,omitempty"`
	// Bill is what the archive stores and the object writes that made it
	// (one more listing of the archive: status only, not ls).
	Bill *binlog.Bill `json:"bill,omitempty"`

	index *binlog.Index // as read by fromRepo
}

func (r *archiveReport) fromRepo(ctx context.Context, rp *repo.Repo, instance string) error {
	ix, err := (&binlog.Store{B: rp.Backend(), Instance: instance, CheckAllData: true}).ReadIndex(ctx)
	if err != nil {
		return err
	}
	backups, err := rp.ListBackups(ctx, instance)
	if err != nil {
		return err
	}
	r.Segments, r.Last, r.Gaps = len(ix.Segments), ix.Last(), ix.Gaps
	for _, s := range ix.Segments {
		r.Bytes += s.RawSize
	}
	r.Windows = binlog.Windows(backups, ix)
	r.index = ix
	return nil
}

// billFromRepo computes the archive's storage bill (after fromRepo).
func (r *archiveReport) billFromRepo(ctx context.Context, rp *repo.Repo, instance string) error {
	b, err := (&binlog.Store{B: rp.Backend(), Instance: instance}).Bill(ctx, r.index, time.Now().UTC())
	if err != nil {
		return err
	}
	r.Bill = b
	return nil
}

// billLine shows a bill: "1,234 objects, 56.7MiB (records 800, ...);
// writes: 3,602 in the last hour, 3,580/h over 24 h".
func billLine(b *binlog.Bill) (storage, writes string) {
	names := map[string]string{binlog.BillRollups: "roll-ups"}
	var kinds []string
	for _, k := range binlog.BillKinds {
		if k == binlog.BillOther && b.Objects[k] == 0 {
			continue
		}
		name := k
		if n, ok := names[k]; ok {
			name = n
		}
		kinds = append(kinds, fmt.Sprintf("%s %s", name, thousands(int64(b.Objects[k]))))
	}
	storage = fmt.Sprintf("%s objects, %s (%s)", thousands(int64(b.TotalObjects)), human(b.TotalBytes), strings.Join(kinds, ", "))
	over := "over 24 h"
	switch {
	case b.AvgSince.IsZero():
		over = "(nothing written)"
	case b.At.Sub(b.AvgSince) < time.Hour:
		over = fmt.Sprintf("(the archive is younger than an hour: since %s)", b.AvgSince.Format(time.RFC3339))
	case b.AvgHours < 24:
		over = fmt.Sprintf("over %.1f h (since %s)", b.AvgHours, b.AvgSince.Format(time.RFC3339))
	}
	writes = fmt.Sprintf("%s in the last hour, %s/h %s", thousands(int64(b.WritesLastHour)), thousands(int64(b.WritesPerHour+0.5)), over)
	return storage, writes
}

// thousands formats n with comma separators: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func (r *archiveReport) fromTemporal(ctx context.Context, a *app, instance string) {
	c, err := workers.Dial(a.cfg, a.log)
	if err != nil {
		r.State, r.TemporalErr = "unknown", err.Error()
		return
	}
	defer c.Close()
	id := workflows.ArchiveWorkflowID(instance)
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		r.State = "not started"
		return
	}
	r.State = strings.ToLower(strings.TrimPrefix(d.WorkflowExecutionInfo.Status.String(), "WORKFLOW_EXECUTION_STATUS_"))
	if d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		if v, err := c.QueryWorkflow(ctx, id, "", workflows.ArchiveStatusQuery); err == nil {
			var st workflows.ArchiveState
			if v.Get(&st) == nil {
				r.Workflow = &st
			}
		}
		for _, pa := range d.PendingActivities {
			if f := pa.GetLastFailure(); f != nil {
				r.LastFailure = fmt.Sprintf("attempt %d failed: %s", pa.GetAttempt()-1, f.GetMessage())
			}
			var live binlog.Status
			if pa.HeartbeatDetails != nil && converter.GetDefaultDataConverter().FromPayloads(pa.HeartbeatDetails, &live) == nil {
				r.Live = &live
				if live.Pending > 0 {
					r.LagMs = float64(time.Since(live.UpdatedAt).Milliseconds())
				}
			}
		}
	}
}

func (r *archiveReport) print() {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "instance\t%s\n", r.Instance)
	fmt.Fprintf(tw, "archiving\t%s\n", r.State)
	if r.Workflow != nil {
		fmt.Fprintf(tw, "host\t%s (since %s, %d runs)\n", r.Workflow.Host, r.Workflow.Since.Format(time.RFC3339), r.Workflow.Runs)
		if r.Workflow.LastError != "" {
			fmt.Fprintf(tw, "last error\t%s (%s)\n", r.Workflow.LastError, r.Workflow.ErrorAt.Format(time.RFC3339))
		}
	}
	if r.LastFailure != "" {
		fmt.Fprintf(tw, "retrying\t%s\n", r.LastFailure)
	}
	if r.Live != nil {
		fmt.Fprintf(tw, "position\t%s:%d  GTID %s  event time %s\n", r.Live.File, r.Live.Pos, r.Live.LastGTID, r.Live.LastEventTime.Format(time.RFC3339))
		fmt.Fprintf(tw, "lag\tp50 %.0f ms  p99 %.0f ms  max %.0f ms (receipt to durable); caught up %v, %d events pending\n",
			r.Live.LagP50Ms, r.Live.LagP99Ms, r.Live.LagMaxMs, r.Live.CaughtUp, r.Live.Pending)
		fmt.Fprintf(tw, "this run\t%s object writes (%s/h), %s listing requests, %s reads, %s deletes\n",
			thousands(int64(r.Live.Writes)), thousands(int64(r.Live.WritesPerHour+0.5)), thousands(int64(r.Live.ListPages)),
			thousands(int64(r.Live.Reads)), thousands(int64(r.Live.Deletes)))
	}
	if r.Last != nil {
		fmt.Fprintf(tw, "archived\t%d segments, %s, up to %s:%d (GTID %s, %s)\n", r.Segments, human(r.Bytes), r.Last.File, r.Last.End,
			r.Last.LastGTID, r.Last.LastTime.Format(time.RFC3339))
	} else {
		fmt.Fprintf(tw, "archived\tnothing yet\n")
	}
	for _, w := range r.Windows {
		fmt.Fprintf(tw, "PITR window\t%s\n", w)
	}
	if len(r.Windows) == 0 {
		fmt.Fprintf(tw, "PITR window\tnone: no backup's consistent point is covered by the archive\n")
	}
	if r.Bill != nil {
		storage, writes := billLine(r.Bill)
		fmt.Fprintf(tw, "storage\t%s\n", storage)
		fmt.Fprintf(tw, "writes\t%s\n", writes)
	}
	for _, g := range r.Gaps {
		fmt.Fprintf(tw, "GAP\tafter %s:%d (%s): %s; resumed at %s:%d\n", g.LastFile, g.LastPos, g.LastTime.Format(time.RFC3339), g.Reason, g.ResumeFile, g.ResumePos)
	}
	_ = tw.Flush()
}

// dialFor loads the config, checks the instance and connects to Temporal.
func (a *app) dialFor(instance string) (client.Client, error) {
	if _, err := a.loadFor(instance); err != nil {
		return nil, err
	}
	return workers.Dial(a.cfg, a.log)
}

// parseTarget turns --to-time, --to-gtid and --to-position into a target.
func parseTarget(toTime, toGTID, toPos string) (binlog.Target, error) {
	var t binlog.Target
	if toTime != "" {
		tm, err := parseTime(toTime)
		if err != nil {
			return t, err
		}
		t.Time = tm
	}
	t.GTID = toGTID
	if toPos != "" {
		f, p, ok := strings.Cut(toPos, ":")
		n, err := strconv.ParseUint(p, 10, 32)
		if !ok || err != nil || f == "" {
			return t, fmt.Errorf("--to-position %q: use FILE:POSITION, e.g. binlog.000042:1234", toPos)
		}
		t.File, t.Pos = f, uint32(n)
	}
	if t.IsZero() {
		return t, nil
	}
	return t, t.Validate()
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		loc := time.Local
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--to-time %q: use RFC 3339 (2026-11-24T09:30:00Z) or local \"2026-11-24 09:30:00\"", s)
}

// printWindows prints the point-in-time recovery windows and the gaps of
// the binlog archive under a backup listing.
func printWindows(ctx context.Context, rp *repo.Repo, instance string) error {
	var r archiveReport
	if err := r.fromRepo(ctx, rp, instance); err != nil {
		return err
	}
	if r.Segments == 0 {
		fmt.Printf("\nbinlog archive: empty (strata archive start %s)\n", instance)
		return nil
	}
	fmt.Printf("\nbinlog archive: %d segments, %s, up to %s:%d (%s)\n", r.Segments, human(r.Bytes), r.Last.File, r.Last.End,
		r.Last.LastTime.Format(time.RFC3339))
	for _, w := range r.Windows {
		fmt.Printf("PITR window  %s\n", w)
	}
	for _, g := range r.Gaps {
		fmt.Printf("GAP          after %s:%d (%s): %s — PITR across it is impossible\n", g.LastFile, g.LastPos,
			g.LastTime.Format(time.RFC3339), g.Reason)
	}
	return nil
}
