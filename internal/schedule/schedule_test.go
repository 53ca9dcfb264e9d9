package schedule

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/workflows"
)

// fakeSchedules keeps schedules in memory the way the server returns
// them: memos as payloads.
type fakeSchedules struct {
	s     map[string]*fakeSchedule
	calls []string
}

type fakeSchedule struct {
	memo   map[string]any
	sched  client.Schedule
	paused bool
}

func newFake() *fakeSchedules { return &fakeSchedules{s: map[string]*fakeSchedule{}} }

func payloads(m map[string]any) map[string]*commonpb.Payload {
	out := map[string]*commonpb.Payload{}
	for k, v := range m {
		p, err := converter.GetDefaultDataConverter().ToPayload(v)
		if err != nil {
			panic(err)
		}
		out[k] = p
	}
	return out
}

func (f *fakeSchedules) Create(_ context.Context, o client.ScheduleOptions) (client.ScheduleHandle, error) {
	f.calls = append(f.calls, "create "+o.ID)
	if _, ok := f.s[o.ID]; ok {
		return nil, serviceerror.NewAlreadyExists("exists")
	}
	spec := o.Spec
	f.s[o.ID] = &fakeSchedule{memo: o.Memo, sched: client.Schedule{Action: o.Action, Spec: &spec,
		Policy: &client.SchedulePolicies{Overlap: o.Overlap, CatchupWindow: o.CatchupWindow}, State: &client.ScheduleState{}}}
	return f.GetHandle(context.Background(), o.ID), nil
}

type fakeIter struct{ es []*client.ScheduleListEntry }

func (i *fakeIter) HasNext() bool { return len(i.es) > 0 }
func (i *fakeIter) Next() (*client.ScheduleListEntry, error) {
	e := i.es[0]
	i.es = i.es[1:]
	return e, nil
}

func (f *fakeSchedules) List(context.Context, client.ScheduleListOptions) (client.ScheduleListIterator, error) {
	it := &fakeIter{}
	for id, s := range f.s {
		it.es = append(it.es, &client.ScheduleListEntry{ID: id, Memo: &commonpb.Memo{Fields: payloads(s.memo)}, Paused: s.paused, Spec: s.sched.Spec})
	}
	return it, nil
}

func (f *fakeSchedules) GetHandle(_ context.Context, id string) client.ScheduleHandle {
	return &fakeHandle{f: f, id: id}
}

type fakeHandle struct {
	client.ScheduleHandle // Backfill, Trigger, ...: not used
	f                     *fakeSchedules
	id                    string
}

func (h *fakeHandle) GetID() string { return h.id }

func (h *fakeHandle) Describe(context.Context) (*client.ScheduleDescription, error) {
	s, ok := h.f.s[h.id]
	if !ok {
		return nil, serviceerror.NewNotFound("no schedule")
	}
	sched := s.sched
	if wa, ok := sched.Action.(*client.ScheduleWorkflowAction); ok {
		c := *wa
		c.Memo = map[string]any{}
		for k, p := range payloads(wa.Memo) {
			c.Memo[k] = p
		}
		sched.Action = &c
	}
	sched.State = &client.ScheduleState{Paused: s.paused}
	return &client.ScheduleDescription{Schedule: sched, Memo: &commonpb.Memo{Fields: payloads(s.memo)}}, nil
}

func (h *fakeHandle) Update(ctx context.Context, o client.ScheduleUpdateOptions) error {
	h.f.calls = append(h.f.calls, "update "+h.id)
	d, err := h.Describe(ctx)
	if err != nil {
		return err
	}
	u, err := o.DoUpdate(client.ScheduleUpdateInput{Description: *d})
	if err != nil {
		return err
	}
	s := h.f.s[h.id]
	s.sched = *u.Schedule
	s.paused = u.Schedule.State.Paused
	return nil
}

func (h *fakeHandle) Delete(context.Context) error {
	h.f.calls = append(h.f.calls, "delete "+h.id)
	if _, ok := h.f.s[h.id]; !ok {
		return serviceerror.NewNotFound("no schedule")
	}
	delete(h.f.s, h.id)
	return nil
}

const cfgYAML = `
storage: {type: local, local: {root: ./repo}}
schedule:
  full: "0 2 * * *"
  incremental_every: 1h
  prune: {hour: "3", minute: "15"}
  drill: "@monthly"
  jitter: 10m
instances:
  - id: db1
    host: h1
    connect: {address: 127.0.0.1:3306, user: root}
    datadir: /var/lib/mysql
  - id: db2
    host: h2
    connect: {address: 127.0.0.1:3307, user: root}
    datadir: /data
    schedule:
      incremental_every: "off"
      verify: "@weekly"
      time_zone: Europe/Berlin
`

func parse(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(y))
	require.NoError(t, err)
	return c
}

func ops(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c.Op)+" "+c.ID)
	}
	return out
}

func TestPlan(t *testing.T) {
	ws := Plan(parse(t, cfgYAML))
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.ID)
	}
	assert.Equal(t, []string{"strata/db1/drill", "strata/db1/full", "strata/db1/incremental", "strata/db1/prune",
		"strata/db2/drill", "strata/db2/full", "strata/db2/prune", "strata/db2/verify"}, ids,
		"drill is scheduled from the fleet's policy; off and unset kinds get none")
	d := ws[0]
	assert.Equal(t, []string{"@monthly"}, d.Options.Spec.CronExpressions)
	assert.Equal(t, workflows.ScheduledRequest{Instance: "db1", Kind: "drill"}, d.Options.Action.(*client.ScheduleWorkflowAction).Args[0])
	w := ws[2]
	assert.Equal(t, enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, w.Options.Overlap)
	assert.Equal(t, config.DefaultCatchupWindow.Std(), w.Options.CatchupWindow)
	assert.Equal(t, "1h0m0s", w.Options.Spec.Intervals[0].Every.String())
	assert.Equal(t, "10m0s", w.Options.Spec.Jitter.String())
	assert.Equal(t, "UTC", w.Options.Spec.TimeZoneName)
	a := w.Options.Action.(*client.ScheduleWorkflowAction)
	assert.Equal(t, workflows.ScheduledWorkflowName, a.Workflow)
	assert.Equal(t, []any{workflows.ScheduledRequest{Instance: "db1", Kind: "incremental"}}, a.Args)
	assert.Equal(t, "strata", a.TaskQueue)
	prune := ws[3].Options.Spec.Calendars[0]
	assert.Equal(t, []client.ScheduleRange{{Start: 3, End: 3, Step: 1}}, prune.Hour)
	assert.Equal(t, []client.ScheduleRange{{Start: 15, End: 15, Step: 1}}, prune.Minute)
	assert.Equal(t, "Europe/Berlin", ws[7].Options.Spec.TimeZoneName)
	assert.NotEqual(t, ws[1].Hash, ws[5].Hash, "the instance is part of the hash")
}

func TestApplyIsIdempotentAndDiffs(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	// Someone else's schedule, which apply must never touch.
	f.s["nightly-report"] = &fakeSchedule{sched: client.Schedule{Action: &client.ScheduleWorkflowAction{}}}
	cfg := parse(t, cfgYAML)

	dry, err := Apply(ctx, f, cfg, true)
	require.NoError(t, err)
	assert.Len(t, dry, 8)
	for _, c := range dry {
		assert.Equal(t, Create, c.Op)
	}
	assert.Len(t, f.s, 1, "a dry run changes nothing")

	first, err := Apply(ctx, f, cfg, false)
	require.NoError(t, err)
	assert.Equal(t, ops(dry), ops(first))
	assert.Len(t, f.s, 9)

	f.calls = nil
	again, err := Apply(ctx, f, cfg, false)
	require.NoError(t, err)
	assert.False(t, Changed(again), "%v", again)
	assert.Empty(t, f.calls, "re-applying calls no create, update or delete")

	// Pause one, then change the policy of db1 and remove db2.
	f.s["strata/db1/full"].paused = true
	next := parse(t, strings.Replace(cfgYAML, `full: "0 2 * * *"`, `full: "0 1 * * *"`, 1))
	next.Instances = next.Instances[:1]
	diff, err := Apply(ctx, f, next, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"unchanged strata/db1/drill", "update strata/db1/full", "unchanged strata/db1/incremental", "unchanged strata/db1/prune",
		"delete strata/db2/drill", "delete strata/db2/full", "delete strata/db2/prune", "delete strata/db2/verify"}, ops(diff))
	assert.Equal(t, []string{"0 1 * * *"}, f.s["strata/db1/full"].sched.Spec.CronExpressions)
	assert.True(t, f.s["strata/db1/full"].paused, "an update keeps the paused state")
	assert.Contains(t, f.s, "nightly-report", "unrelated schedules are never touched")
	assert.Len(t, f.s, 5)

	again, err = Apply(ctx, f, next, false)
	require.NoError(t, err)
	assert.False(t, Changed(again))
}

func TestApplyRefusesForeignScheduleWithStrataID(t *testing.T) {
	f := newFake()
	f.s["strata/db1/full"] = &fakeSchedule{sched: client.Schedule{Action: &client.ScheduleWorkflowAction{}}}
	_, err := Apply(context.Background(), f, parse(t, cfgYAML), false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not Strata's")
	assert.NotContains(t, f.calls, "update strata/db1/full")
	_, err = Handle(context.Background(), f, "db1", "full")
	assert.ErrorContains(t, err, "not Strata's")
}

func TestSplitID(t *testing.T) {
	i, k := SplitID(workflows.ScheduleID("db.1", "verify"))
	assert.Equal(t, "db.1", i)
	assert.Equal(t, "verify", k)
}

// A logical spec gives a logical schedule, whose runs ask for a logical
// backup; an instance can turn it off.
func TestPlanLogical(t *testing.T) {
	y := strings.Replace(cfgYAML, "  drill: \"@monthly\"\n", "  drill: \"@monthly\"\n  logical: {hour: \"4\", minute: \"0\"}\n", 1)
	y = strings.Replace(y, "      verify: \"@weekly\"\n", "      verify: \"@weekly\"\n      logical: \"off\"\n", 1)
	var ids []string
	var logical *Want
	ws := Plan(parse(t, y))
	for i, w := range ws {
		ids = append(ids, w.ID)
		if w.ID == "strata/db1/logical" {
			logical = &ws[i]
		}
	}
	assert.Contains(t, ids, "strata/db1/logical")
	assert.NotContains(t, ids, "strata/db2/logical")
	require.NotNil(t, logical)
	assert.Equal(t, []any{workflows.ScheduledRequest{Instance: "db1", Kind: "logical"}}, logical.Options.Action.(*client.ScheduleWorkflowAction).Args)
	_, err := config.Parse([]byte(strings.Replace(cfgYAML, "  drill: \"@monthly\"\n", "  drill: \"@monthly\"\n  logical: \"not a spec\"\n", 1)))
	require.ErrorContains(t, err, "logical")
}
