package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// scheduleKinds are the kinds of Temporal Schedules an instance may have
// (workflows.ScheduleID).
var scheduleKinds = []string{"full", "incremental", "logical", "verify", "prune", "drill"}

// instanceStatus is one instance's part of `strata status`.
type instanceStatus struct {
	Instance        string         `json:"instance"`
	Host            string         `json:"host"`
	LastFull        *backupRef     `json:"last_full,omitempty"`
	LastIncremental *backupRef     `json:"last_incremental,omitempty"` // incremental or differential
	LastVerify      *workflowRef   `json:"last_verify,omitempty"`
	LastDrill       *drillBrief    `json:"last_drill,omitempty"`
	Archive         archiveBrief   `json:"archive"`
	PITR            *binlog.Window `json:"pitr_window,omitempty"` // the newest recovery window
	Schedules       []scheduleRef  `json:"schedules"`
	Running         []workflowRef  `json:"running"`
	// Entity is the instance's entity workflow's status query answer, when
	// it runs: its queue is the work accepted and not started.
	Entity *workflows.InstanceStatus `json:"entity,omitempty"`
	Queued []workflows.InstanceRun   `json:"queued"`
	// WaitingForPermit are the instance's workflows waiting for a permit
	// of a fleet-wide limiter (fleet.max_concurrent_*, storage.max_concurrent).
	WaitingForPermit []activities.Permit `json:"waiting_for_permit"`
	// Errors are the parts that could not be read (repository, Temporal).
	Errors []string `json:"errors,omitempty"`
}

// drillBrief is the last drill of an instance (from its report).
type drillBrief struct {
	DrillID     string    `json:"drill_id"`
	Result      string    `json:"result"`
	BackupID    string    `json:"backup_id"`
	Target      string    `json:"target,omitempty"`
	Finished    time.Time `json:"finished"`
	RTOSeconds  float64   `json:"rto_seconds"`
	RPOSeconds  float64   `json:"rpo_seconds"`
	RPOExact    bool      `json:"rpo_exact"`
	FailedPhase string    `json:"failed_phase,omitempty"`
	Error       string    `json:"error,omitempty"`
}

type backupRef struct {
	BackupID string    `json:"backup_id"`
	Type     string    `json:"type"`
	EndTime  time.Time `json:"end_time"`
	RawSize  int64     `json:"raw_size"`
}

// workflowRef is a workflow as visibility lists it.
type workflowRef struct {
	WorkflowID string    `json:"workflow_id"`
	Type       string    `json:"type"`
	Kind       string    `json:"kind,omitempty"`
	BackupID   string    `json:"backup_id,omitempty"`
	Status     string    `json:"status"`
	StartTime  time.Time `json:"start_time"`
	CloseTime  time.Time `json:"close_time,omitzero"`
}

type archiveBrief struct {
	State string `json:"state"` // running, stopped, not started, unknown
	// LagMs is now minus the newest event received but not yet durable
	// (0 when caught up).
	LagMs float64 `json:"lag_ms"`
	// ArchivedUpTo is the time of the newest archived event.
	ArchivedUpTo time.Time `json:"archived_up_to,omitzero"`
	Gaps         int       `json:"gaps"`
}

type scheduleRef struct {
	Kind   string      `json:"kind"`
	ID     string      `json:"schedule_id"`
	Paused bool        `json:"paused"`
	Next   []time.Time `json:"next"`
}

func statusCmd(a *app) *cobra.Command {
	var asJS bool
	cmd := &cobra.Command{
		Use:   "status [INSTANCE...]",
		Short: "Show per instance: last full, incremental and verify, archive lag, PITR window, next scheduled runs, running and queued work",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.load(); err != nil {
				return err
			}
			if len(args) == 0 {
				for _, in := range a.cfg.Instances {
					args = append(args, in.ID)
				}
			}
			for _, id := range args {
				if _, err := a.cfg.Instance(id); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			r, rerr := workers.OpenRepo(ctx, a.cfg)
			c, cerr := workers.Dial(a.cfg, a.log)
			if cerr == nil {
				defer c.Close()
			}
			var limiters []activities.LimiterState
			var lerr error
			if cerr == nil {
				limiters, lerr = workers.LimiterStatus(ctx, c, a.cfg)
			}
			var out []*instanceStatus
			for _, id := range args {
				in, _ := a.cfg.Instance(id)
				st := &instanceStatus{Instance: id, Host: in.Host, Schedules: []scheduleRef{}, Running: []workflowRef{}, Queued: []workflows.InstanceRun{},
					WaitingForPermit: []activities.Permit{}}
				if lerr != nil {
					st.Errors = append(st.Errors, "limiters: "+lerr.Error())
				}
				for _, l := range limiters {
					for _, w := range l.Waiters {
						if w.Instance == id {
							st.WaitingForPermit = append(st.WaitingForPermit, w)
						}
					}
				}
				if rerr != nil {
					st.Errors = append(st.Errors, "repository: "+rerr.Error())
				} else {
					st.fromRepo(ctx, r)
				}
				if cerr != nil {
					st.Archive.State = "unknown"
					st.Errors = append(st.Errors, "temporal: "+cerr.Error())
				} else {
					st.fromTemporal(ctx, a, c)
				}
				out = append(out, st)
			}
			if asJS {
				return printJSON(struct {
					Instances []*instanceStatus         `json:"instances"`
					Limiters  []activities.LimiterState `json:"limiters"`
				}{out, append([]activities.LimiterState{}, limiters...)})
			}
			printLimiters(os.Stdout, limiters, time.Now())
			for i, st := range out {
				if i > 0 {
					fmt.Println()
				}
				st.print(os.Stdout, time.Now())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJS, "json", false, "print as JSON")
	return cmd
}

// fromRepo fills the last backups and the PITR window from the repository.
func (st *instanceStatus) fromRepo(ctx context.Context, r *repo.Repo) {
	ms, err := r.ListBackups(ctx, st.Instance)
	if err != nil {
		st.Errors = append(st.Errors, "backups: "+err.Error())
		return
	}
	for _, m := range ms { // sorted by start time: the last one wins
		ref := &backupRef{BackupID: m.BackupID, Type: m.Type, EndTime: m.EndTime, RawSize: m.RawSize}
		if m.Type == manifest.TypeFull {
			st.LastFull = ref
		} else {
			st.LastIncremental = ref
		}
	}
	if h, err := drill.History(ctx, r.Backend(), st.Instance); err != nil {
		st.Errors = append(st.Errors, "drills: "+err.Error())
	} else if len(h) > 0 {
		d := h[0]
		st.LastDrill = &drillBrief{DrillID: d.DrillID, Result: d.Result, BackupID: d.BackupID, Target: d.Target, Finished: d.Finished,
			RTOSeconds: d.RTOSeconds, RPOSeconds: d.RPOSeconds, RPOExact: d.RPOExact, FailedPhase: d.FailedPhase, Error: d.Error}
	}
	var ar archiveReport
	if err := ar.fromRepo(ctx, r, st.Instance); err != nil {
		st.Errors = append(st.Errors, "binlog archive: "+err.Error())
		return
	}
	if ar.Last != nil {
		st.Archive.ArchivedUpTo = ar.Last.LastTime
	}
	st.Archive.Gaps = len(ar.Gaps)
	if n := len(ar.Windows); n > 0 {
		st.PITR = &ar.Windows[n-1]
	}
}

// fromTemporal fills the archiver's state, the last verify, the schedules,
// the running workflows and the entity's queue.
func (st *instanceStatus) fromTemporal(ctx context.Context, a *app, c client.Client) {
	var ar archiveReport
	ar.fromTemporal(ctx, a, st.Instance)
	st.Archive.State, st.Archive.LagMs = ar.State, ar.LagMs
	if ar.TemporalErr != "" {
		st.Errors = append(st.Errors, "temporal: "+ar.TemporalErr)
	}

	q := fmt.Sprintf("StrataInstance = '%s' AND StrataKind = '%s' AND ExecutionStatus != 'Running'", st.Instance, workflows.KindVerify)
	if ws, err := listWorkflows(ctx, c, a.cfg.Temporal.Namespace, q, 100); err != nil {
		st.Errors = append(st.Errors, "list verify workflows: "+err.Error())
	} else {
		for i := range ws {
			if st.LastVerify == nil || ws[i].CloseTime.After(st.LastVerify.CloseTime) {
				st.LastVerify = &ws[i]
			}
		}
	}
	q = fmt.Sprintf("StrataInstance = '%s' AND ExecutionStatus = 'Running'", st.Instance)
	if ws, err := listWorkflows(ctx, c, a.cfg.Temporal.Namespace, q, 1000); err != nil {
		st.Errors = append(st.Errors, "list running workflows: "+err.Error())
	} else {
		sort.Slice(ws, func(i, j int) bool { return ws[i].StartTime.Before(ws[j].StartTime) })
		st.Running = ws
	}

	for _, kind := range scheduleKinds {
		id := workflows.ScheduleID(st.Instance, kind)
		d, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			continue
		} else if err != nil {
			st.Errors = append(st.Errors, fmt.Sprintf("schedule %s: %v", id, err))
			continue
		}
		st.Schedules = append(st.Schedules, scheduleRef{Kind: kind, ID: id, Paused: d.Schedule.State != nil && d.Schedule.State.Paused,
			Next: d.Info.NextActionTimes})
	}

	eid := workflows.InstanceWorkflowID(st.Instance)
	d, err := c.DescribeWorkflowExecution(ctx, eid, "")
	if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return // no entity (yet): nothing is queued there
	}
	v, err := c.QueryWorkflow(ctx, eid, "", workflows.InstanceStatusQuery)
	if err != nil {
		st.Errors = append(st.Errors, fmt.Sprintf("query %s %s: %v", eid, workflows.InstanceStatusQuery, err))
		return
	}
	var is workflows.InstanceStatus
	if err := v.Get(&is); err != nil {
		st.Errors = append(st.Errors, fmt.Sprintf("query %s: %v", eid, err))
		return
	}
	st.Entity = &is
	st.Queued = append(st.Queued, is.Queue...)
}

// listWorkflows lists up to limit workflows matching a visibility query.
func listWorkflows(ctx context.Context, c client.Client, namespace, query string, limit int) ([]workflowRef, error) {
	var out []workflowRef
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace, Query: query, PageSize: int32(min(limit, 1000)), NextPageToken: token,
		})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			out = append(out, workflowRefOf(e))
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 || len(out) >= limit {
			return out, nil
		}
	}
}

func workflowRefOf(e *workflowpb.WorkflowExecutionInfo) workflowRef {
	r := workflowRef{
		WorkflowID: e.GetExecution().GetWorkflowId(),
		Type:       e.GetType().GetName(),
		Status:     strings.ToLower(strings.TrimPrefix(e.GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_")),
		Kind:       keywordSA(e.GetSearchAttributes(), "StrataKind"),
		BackupID:   keywordSA(e.GetSearchAttributes(), "StrataBackupID"),
	}
	if t := e.GetStartTime(); t != nil {
		r.StartTime = t.AsTime()
	}
	if t := e.GetCloseTime(); t != nil {
		r.CloseTime = t.AsTime()
	}
	return r
}

// keywordSA decodes a Keyword search attribute ("" when absent).
func keywordSA(sa *commonpb.SearchAttributes, name string) string {
	p, ok := sa.GetIndexedFields()[name]
	if !ok {
		return ""
	}
	var s string
	if converter.GetDefaultDataConverter().FromPayload(p, &s) != nil {
		return ""
	}
	return s
}

// ago shows how long before now t was: "3m07s ago".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + formatETA(-d)
	}
	return formatETA(d) + " ago"
}

func (st *instanceStatus) print(w io.Writer, now time.Time) {
	fmt.Fprintf(w, "%s (host %s)\n", st.Instance, st.Host)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	backup := func(label string, b *backupRef) {
		if b == nil {
			fmt.Fprintf(tw, "  %s\tnone\n", label)
			return
		}
		fmt.Fprintf(tw, "  %s\t%s %s, ended %s (%s), %s\n", label, b.Type, b.BackupID, b.EndTime.Format(time.RFC3339), ago(b.EndTime, now), human(b.RawSize))
	}
	backup("last full", st.LastFull)
	backup("last incremental", st.LastIncremental)
	if v := st.LastVerify; v != nil {
		fmt.Fprintf(tw, "  last verify\t%s %s (%s), workflow %s\n", v.Status, v.CloseTime.Format(time.RFC3339), ago(v.CloseTime, now), v.WorkflowID)
	} else {
		fmt.Fprintf(tw, "  last verify\tnone\n")
	}
	if d := st.LastDrill; d != nil {
		line := fmt.Sprintf("%s %s of %s, %s (%s)", d.Result, d.DrillID, d.BackupID, d.Finished.Format(time.RFC3339), ago(d.Finished, now))
		if d.Result == drill.ResultPassed {
			line += fmt.Sprintf(", RTO %.1fs, RPO %.1fs", d.RTOSeconds, d.RPOSeconds)
		} else {
			line += ": " + d.Error
		}
		fmt.Fprintf(tw, "  last drill\t%s\n", line)
	} else {
		fmt.Fprintf(tw, "  last drill\tnone\n")
	}
	arch := st.Archive.State
	if st.Archive.State == "running" {
		arch += fmt.Sprintf(", lag %.0f ms", st.Archive.LagMs)
	}
	if !st.Archive.ArchivedUpTo.IsZero() {
		arch += fmt.Sprintf(", archived up to %s (%s)", st.Archive.ArchivedUpTo.Format(time.RFC3339), ago(st.Archive.ArchivedUpTo, now))
	}
	if st.Archive.Gaps > 0 {
		arch += fmt.Sprintf(", %d gaps", st.Archive.Gaps)
	}
	fmt.Fprintf(tw, "  archive\t%s\n", arch)
	if st.PITR != nil {
		fmt.Fprintf(tw, "  PITR window\t%s\n", st.PITR)
	} else {
		fmt.Fprintf(tw, "  PITR window\tnone\n")
	}
	if len(st.Schedules) == 0 {
		fmt.Fprintf(tw, "  next runs\tno schedules\n")
	}
	for _, s := range st.Schedules {
		next := "none"
		if len(s.Next) > 0 {
			next = fmt.Sprintf("%s (%s)", s.Next[0].Format(time.RFC3339), ago(s.Next[0], now))
		}
		if s.Paused {
			next += ", paused"
		}
		fmt.Fprintf(tw, "  next %s\t%s\n", s.Kind, next)
	}
	if len(st.Running) == 0 {
		fmt.Fprintf(tw, "  running\tnothing\n")
	}
	for _, r := range st.Running {
		fmt.Fprintf(tw, "  running\t%s (%s, started %s)\n", r.WorkflowID, r.Type, ago(r.StartTime, now))
	}
	if e := st.Entity; e != nil && e.Running != nil && e.Running.State != "running" {
		fmt.Fprintf(tw, "  waiting\t%s %s, %s\n", e.Running.Ask.Type, e.Running.BackupID, e.Running.State)
	}
	for _, q := range st.Queued {
		who := q.Ask.RequestedBy
		if who == "" {
			who = "-"
		}
		fmt.Fprintf(tw, "  queued\t%s %s, %s, accepted %s, by %s\n", q.Ask.Type, q.BackupID, q.State, ago(q.AcceptedAt, now), who)
	}
	for _, p := range st.WaitingForPermit {
		fmt.Fprintf(tw, "  waiting\t%s for a fleet permit (%s, asked %s)\n", p.WorkflowID, p.Kind, ago(p.Since, now))
	}
	for _, e := range st.Errors {
		fmt.Fprintf(tw, "  unavailable\t%s\n", e)
	}
	_ = tw.Flush()
}

// printLimiters shows the fleet-wide limiters: permits held of the limit,
// and how many wait.
func printLimiters(w io.Writer, ls []activities.LimiterState, now time.Time) {
	if len(ls) == 0 {
		return
	}
	for _, l := range ls {
		oldest := ""
		if len(l.Waiters) > 0 {
			oldest = fmt.Sprintf(", the first waiting since %s", ago(l.Waiters[0].Since, now))
		}
		fmt.Fprintf(w, "limiter %s: %d of %d permits held, %d waiting%s\n", l.ID, len(l.Holders), l.Max, len(l.Waiters), oldest)
	}
	fmt.Fprintln(w)
}
