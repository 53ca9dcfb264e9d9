// Package schedule turns the schedule policy of the config into Temporal
// Schedules and keeps them in step with it: Plan computes the schedules the
// policy wants, Apply creates, updates and deletes Strata's schedules to
// match (idempotently) and reports the diff.
//
// A Strata schedule has the id workflows.ScheduleID(instance, kind) and
// carries the memo strata=managed, set when it is created; Apply never
// touches a schedule without it, whatever its id. Its action's memo holds a
// hash of what the policy asked for (PolicyHashMemo), so that an unchanged
// schedule is recognized without comparing specs the server normalizes.
package schedule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/workflows"
)

// Memo keys of Strata's schedules.
const (
	// ManagedMemo marks a schedule as Strata's (value ManagedValue).
	ManagedMemo  = "strata"
	ManagedValue = "managed"
	// PolicyHashMemo is in the action's memo: the hash of the wanted
	// schedule it was last created or updated from.
	PolicyHashMemo = "strata-policy"
)

// specVersion is part of every hash: raise it when the schedules built
// from the same policy change, so that apply updates them all.
const specVersion = 1

// Want is one schedule the policy asks for.
type Want struct {
	ID       string
	Instance string
	Kind     string
	// Summary is the policy in words, e.g. "cron 0 2 * * * UTC, jitter 30m".
	Summary string
	Hash    string
	Options client.ScheduleOptions
}

// Plan returns the schedules cfg's policy wants, sorted by id.
func Plan(cfg *config.Config) []Want {
	var out []Want
	for _, in := range cfg.Instances {
		s := in.Schedule
		for _, kind := range config.ScheduleKinds {
			var spec client.ScheduleSpec
			var what string
			switch kind {
			case "full", "logical", "verify", "prune", "drill":
				sp := map[string]config.Spec{"full": s.Full, "logical": s.Logical, "verify": s.Verify, "prune": s.Prune, "drill": s.Drill}[kind]
				if !sp.Active() {
					continue
				}
				spec = specOf(sp)
				what = sp.String()
			case "incremental":
				if !s.IncrementalEvery.Active() {
					continue
				}
				spec.Intervals = []client.ScheduleIntervalSpec{{Every: s.IncrementalEvery.Every.Std()}}
				what = "every " + s.IncrementalEvery.String()
			default:
				continue
			}
			tz := s.TimeZone
			if tz == "" {
				tz = "UTC"
			}
			spec.TimeZoneName = tz
			spec.Jitter = s.Jitter.Std()
			catchup := s.CatchupWindow.Std()
			req := workflows.ScheduledRequest{Instance: in.ID, Kind: kind}
			summary := fmt.Sprintf("%s (%s), jitter %s, catch-up %s, overlap skip", what, tz, spec.Jitter, catchup)
			hash := hashOf(struct {
				V         int
				Spec      string
				TZ        string
				Jitter    time.Duration
				Catchup   time.Duration
				Req       workflows.ScheduledRequest
				TaskQueue string
				Host      string
			}{specVersion, what, tz, spec.Jitter, catchup, req, cfg.Temporal.TaskQueue, in.Host})
			id := workflows.ScheduleID(in.ID, kind)
			out = append(out, Want{ID: id, Instance: in.ID, Kind: kind, Summary: summary, Hash: hash, Options: client.ScheduleOptions{
				ID:                    id,
				Spec:                  spec,
				Overlap:               enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
				CatchupWindow:         catchup,
				Memo:                  map[string]any{ManagedMemo: ManagedValue},
				TypedSearchAttributes: workflows.SearchAttributes(in.ID, "schedule", "", in.Host),
				Action: &client.ScheduleWorkflowAction{
					ID:                    workflows.ScheduledWorkflowID(in.ID, kind),
					Workflow:              workflows.ScheduledWorkflowName,
					Args:                  []any{req},
					TaskQueue:             cfg.Temporal.TaskQueue,
					Memo:                  map[string]any{PolicyHashMemo: hash},
					TypedSearchAttributes: workflows.SearchAttributes(in.ID, "schedule", "", in.Host),
				},
			}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func hashOf(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// specOf turns a cron or calendar spec into a Temporal schedule spec.
func specOf(s config.Spec) client.ScheduleSpec {
	if s.Calendar == nil {
		return client.ScheduleSpec{CronExpressions: []string{s.Cron}}
	}
	c := s.Calendar
	rng := func(v, def string, lo, hi int) []client.ScheduleRange {
		rs, _ := config.ParseCronField(or(v, def), lo, hi) // validated by the config
		out := make([]client.ScheduleRange, len(rs))
		for i, r := range rs {
			out[i] = client.ScheduleRange{Start: r.Start, End: r.End, Step: r.Step}
		}
		return out
	}
	return client.ScheduleSpec{Calendars: []client.ScheduleCalendarSpec{{
		Second:     rng(c.Second, "0", 0, 59),
		Minute:     rng(c.Minute, "0", 0, 59),
		Hour:       rng(c.Hour, "*", 0, 23),
		DayOfMonth: rng(c.DayOfMonth, "*", 1, 31),
		Month:      rng(c.Month, "*", 1, 12),
		DayOfWeek:  rng(c.DayOfWeek, "*", 0, 6),
	}}}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Op is what Apply did (or, dry, would do) to one schedule.
type Op string

// The operations of a diff.
const (
	Create    Op = "create"
	Update    Op = "update"
	Delete    Op = "delete"
	Unchanged Op = "unchanged"
)

// Change is one line of the diff.
type Change struct {
	Op       Op     `json:"op"`
	ID       string `json:"id"`
	Instance string `json:"instance"`
	Kind     string `json:"kind"`
	Summary  string `json:"summary,omitempty"`
}

func (c Change) String() string {
	s := fmt.Sprintf("%-9s %s", c.Op, c.ID)
	if c.Summary != "" {
		s += "  " + c.Summary
	}
	return s
}

// Changed reports whether a diff changes anything.
func Changed(cs []Change) bool {
	for _, c := range cs {
		if c.Op != Unchanged {
			return true
		}
	}
	return false
}

// Apply makes Strata's schedules match cfg's policy: it creates the
// missing ones, updates those whose policy changed (keeping their paused
// state), and deletes Strata's schedules the policy no longer wants, for
// example of a removed instance. With dryRun it changes nothing and
// returns what it would do. Schedules without the strata=managed memo are
// never touched; one with a Strata id but no such memo is an error.
func Apply(ctx context.Context, sc client.ScheduleClient, cfg *config.Config, dryRun bool) ([]Change, error) {
	want := Plan(cfg)
	wanted := map[string]bool{}
	var out []Change
	for _, w := range want {
		wanted[w.ID] = true
		ch := Change{ID: w.ID, Instance: w.Instance, Kind: w.Kind, Summary: w.Summary}
		h := sc.GetHandle(ctx, w.ID)
		desc, err := h.Describe(ctx)
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			ch.Op = Create
			if !dryRun {
				if _, err := sc.Create(ctx, w.Options); err != nil {
					var exists *serviceerror.AlreadyExists
					if !errors.As(err, &exists) && !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
						return out, fmt.Errorf("create schedule %s: %w", w.ID, err)
					}
					// Another worker created it just now, from the same policy.
				}
			}
		case err != nil:
			return out, fmt.Errorf("describe schedule %s: %w", w.ID, err)
		default:
			if !managed(desc.Memo) {
				return out, fmt.Errorf("schedule %s exists but is not Strata's (no memo %s=%s): rename or delete it, Strata will not change it", w.ID, ManagedMemo, ManagedValue)
			}
			if actionHash(desc.Schedule.Action) == w.Hash {
				ch.Op = Unchanged
				break
			}
			ch.Op = Update
			if !dryRun {
				err := h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
					s := in.Description.Schedule
					s.Spec = &w.Options.Spec
					s.Action = w.Options.Action
					if s.Policy == nil {
						s.Policy = &client.SchedulePolicies{}
					}
					s.Policy.Overlap = w.Options.Overlap
					s.Policy.CatchupWindow = w.Options.CatchupWindow
					sa := w.Options.TypedSearchAttributes
					return &client.ScheduleUpdate{Schedule: &s, TypedSearchAttributes: &sa}, nil
				}})
				if err != nil {
					return out, fmt.Errorf("update schedule %s: %w", w.ID, err)
				}
			}
		}
		out = append(out, ch)
	}
	// What Strata has and the policy no longer wants. The list is
	// eventually consistent: each candidate is described before it goes.
	have, err := List(ctx, sc)
	if err != nil {
		return out, err
	}
	for _, e := range have {
		if wanted[e.ID] {
			continue
		}
		if _, err := sc.GetHandle(ctx, e.ID).Describe(ctx); err != nil {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				continue // already gone
			}
			return out, fmt.Errorf("describe schedule %s: %w", e.ID, err)
		}
		out = append(out, Change{Op: Delete, ID: e.ID, Instance: e.Instance, Kind: e.Kind})
		if !dryRun {
			if err := sc.GetHandle(ctx, e.ID).Delete(ctx); err != nil {
				var nf *serviceerror.NotFound
				if !errors.As(err, &nf) {
					return out, fmt.Errorf("delete schedule %s: %w", e.ID, err)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func managed(m *commonpb.Memo) bool {
	if m == nil {
		return false
	}
	return decode(m.GetFields()[ManagedMemo]) == ManagedValue
}

func actionHash(a client.ScheduleAction) string {
	wa, ok := a.(*client.ScheduleWorkflowAction)
	if !ok {
		return ""
	}
	switch v := wa.Memo[PolicyHashMemo].(type) {
	case *commonpb.Payload:
		return decode(v)
	case string:
		return v
	}
	return ""
}

func decode(p *commonpb.Payload) string {
	if p == nil {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}

// Entry is one of Strata's schedules as listed.
type Entry struct {
	ID       string   `json:"id"`
	Instance string   `json:"instance"`
	Kind     string   `json:"kind"`
	Paused   bool     `json:"paused"`
	Note     string   `json:"note,omitempty"`
	Spec     string   `json:"spec,omitempty"`
	Next     []string `json:"next_runs,omitempty"`
	Recent   []string `json:"recent_runs,omitempty"`
}

// List returns Strata's schedules (those with the strata=managed memo),
// sorted by id. The server's list is eventually consistent: a schedule
// created a moment ago may be missing.
func List(ctx context.Context, sc client.ScheduleClient) ([]Entry, error) {
	it, err := sc.List(ctx, client.ScheduleListOptions{PageSize: 1000})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var out []Entry
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if !managed(e.Memo) {
			continue
		}
		inst, kind := SplitID(e.ID)
		en := Entry{ID: e.ID, Instance: inst, Kind: kind, Paused: e.Paused}
		for _, t := range e.NextActionTimes {
			en.Next = append(en.Next, t.UTC().Format(time.RFC3339))
		}
		for _, r := range e.RecentActions {
			en.Recent = append(en.Recent, r.ActualTime.UTC().Format(time.RFC3339))
		}
		if e.Spec != nil {
			en.Spec = describeSpec(e.Spec)
		}
		out = append(out, en)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SplitID returns the instance and kind of a Strata schedule id.
func SplitID(id string) (instance, kind string) {
	rest, ok := strings.CutPrefix(id, "strata/")
	if !ok {
		return "", ""
	}
	i := strings.LastIndex(rest, "/")
	if i < 0 {
		return rest, ""
	}
	return rest[:i], rest[i+1:]
}

func describeSpec(s *client.ScheduleSpec) string {
	var parts []string
	for _, iv := range s.Intervals {
		parts = append(parts, "every "+iv.Every.String())
	}
	for _, c := range s.Calendars {
		parts = append(parts, "calendar "+rangesString(c.Minute)+" "+rangesString(c.Hour)+" "+rangesString(c.DayOfMonth)+" "+rangesString(c.Month)+" "+rangesString(c.DayOfWeek))
	}
	parts = append(parts, s.CronExpressions...)
	return strings.Join(parts, "; ")
}

func rangesString(rs []client.ScheduleRange) string {
	if len(rs) == 0 {
		return "*"
	}
	var p []string
	for _, r := range rs {
		s := fmt.Sprint(r.Start)
		if r.End > r.Start {
			s += fmt.Sprintf("-%d", r.End)
		}
		if r.Step > 1 {
			s += fmt.Sprintf("/%d", r.Step)
		}
		p = append(p, s)
	}
	return strings.Join(p, ",")
}

// Handle returns the handle of a Strata schedule after checking that it
// exists and is Strata's, so that pause, resume and trigger never act on
// another schedule.
func Handle(ctx context.Context, sc client.ScheduleClient, instance, kind string) (client.ScheduleHandle, error) {
	id := workflows.ScheduleID(instance, kind)
	h := sc.GetHandle(ctx, id)
	d, err := h.Describe(ctx)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("no schedule %s: is schedule.%s set for instance %s, and was `strata schedule apply` run?", id, kind, instance)
	}
	if err != nil {
		return nil, fmt.Errorf("describe schedule %s: %w", id, err)
	}
	if !managed(d.Memo) {
		return nil, fmt.Errorf("schedule %s is not Strata's (no memo %s=%s)", id, ManagedMemo, ManagedValue)
	}
	return h, nil
}
