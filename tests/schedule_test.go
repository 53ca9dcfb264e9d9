package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/schedule"
	"github.com/strata-backup/strata/workflows"
)

// A second instance on a host without an agent: it only gets schedules.
const scheduledOther extraInstance = `
  - id: db2
    host: h2
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    schedule:
      incremental_every: "off"
      verify: "off"
      full: {hour: "1", minute: "15", day_of_week: "1-5"}
`

const fleetPolicy = `
schedule:
  full: "0 3 * * *"
  incremental_every: 6h
  verify: "@weekly"
  prune: "30 4 * * *"
  drill: "0 5 1 * *"
  time_zone: Europe/Berlin
  jitter: 5m
  catchup_window: 20m
`

// applied runs `strata schedule apply` (with args) and returns its lines.
func (s *stack) applied(args ...string) map[string]string {
	s.t.Helper()
	out, err := s.cli(append([]string{"schedule", "apply", "--json"}, args...)...)
	require.NoError(s.t, err, out)
	var cs []schedule.Change
	require.NoError(s.t, json.Unmarshal([]byte(out), &cs), out)
	m := map[string]string{}
	for _, c := range cs {
		m[c.ID] = string(c.Op)
	}
	return m
}

func TestSchedulesApplyReapplyRemoveTrigger(t *testing.T) {
	s := newStack(t, scheduledOther)
	s.seeded(2 << 20)
	sc := s.client.ScheduleClient()
	ctx := s.ctx

	// Someone else's schedule in the namespace: apply never touches it.
	_, err := sc.Create(ctx, client.ScheduleOptions{ID: "reports/nightly", Spec: client.ScheduleSpec{CronExpressions: []string{"0 1 * * *"}},
		Action: &client.ScheduleWorkflowAction{Workflow: "ReportWorkflow", TaskQueue: "reports"}, Paused: true})
	require.NoError(t, err)

	s.writeConfig(s.readConfig() + fleetPolicy)
	want := map[string]string{
		"strata/db1/full": "create", "strata/db1/incremental": "create", "strata/db1/verify": "create", "strata/db1/prune": "create",
		"strata/db2/full": "create", "strata/db2/prune": "create",
		"strata/db1/drill": "create", "strata/db2/drill": "create",
	}
	assert.Equal(t, want, s.applied("--dry-run"))
	_, err = sc.GetHandle(ctx, "strata/db1/full").Describe(ctx)
	var nf *serviceerror.NotFound
	require.ErrorAs(t, err, &nf, "a dry run creates nothing")

	assert.Equal(t, want, s.applied(), "drill is scheduled too")

	// Described back through the client.
	d, err := sc.GetHandle(ctx, "strata/db1/incremental").Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, d.Schedule.Policy.Overlap)
	assert.Equal(t, 20*time.Minute, d.Schedule.Policy.CatchupWindow)
	assert.Equal(t, 5*time.Minute, d.Schedule.Spec.Jitter)
	assert.Equal(t, "Europe/Berlin", d.Schedule.Spec.TimeZoneName)
	require.Len(t, d.Schedule.Spec.Intervals, 1)
	assert.Equal(t, 6*time.Hour, d.Schedule.Spec.Intervals[0].Every)
	act := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	assert.Equal(t, workflows.ScheduledWorkflowName, act.Workflow)
	assert.Equal(t, s.cfg.Temporal.TaskQueue, act.TaskQueue)
	assert.Equal(t, workflows.ScheduledWorkflowID("db1", "incremental"), act.ID)
	d2, err := sc.GetHandle(ctx, "strata/db2/full").Describe(ctx)
	require.NoError(t, err)
	require.Len(t, d2.Schedule.Spec.Calendars, 1)
	cal := d2.Schedule.Spec.Calendars[0]
	assert.Equal(t, []client.ScheduleRange{{Start: 1, End: 5, Step: 1}}, cal.DayOfWeek)
	assert.Equal(t, []client.ScheduleRange{{Start: 1, End: 1, Step: 1}}, cal.Hour)
	assert.NotEmpty(t, d2.Info.NextActionTimes)
	updated := d.Info.LastUpdateAt

	// Re-applying is a no-op.
	again := s.applied()
	for id, op := range again {
		assert.Equal(t, "unchanged", op, id)
	}
	assert.Len(t, again, len(want))
	d, err = sc.GetHandle(ctx, "strata/db1/incremental").Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, updated, d.Info.LastUpdateAt, "re-applying does not update the schedule")

	// A changed policy updates only what changed; pause survives it.
	out, err := s.cli("schedule", "pause", "db1", "prune", "--note", "maintenance window")
	require.NoError(t, err, out)
	s.editConfig(`prune: "30 4 * * *"`, `prune: "45 4 * * *"`)
	ch := s.applied()
	assert.Equal(t, "update", ch["strata/db1/prune"])
	assert.Equal(t, "update", ch["strata/db2/prune"])
	assert.Equal(t, "unchanged", ch["strata/db1/full"])
	d, err = sc.GetHandle(ctx, "strata/db1/prune").Describe(ctx)
	require.NoError(t, err)
	assert.True(t, d.Schedule.State.Paused, "an update keeps the schedule paused")
	out, err = s.cli("schedule", "resume", "db1", "prune")
	require.NoError(t, err, out)
	d, err = sc.GetHandle(ctx, "strata/db1/prune").Describe(ctx)
	require.NoError(t, err)
	assert.False(t, d.Schedule.State.Paused)

	// Removing an instance deletes its schedules, and only Strata's.
	y := s.readConfig()
	i, j := strings.Index(y, "  - id: db2"), strings.Index(y, "\nschedule:")
	require.True(t, i > 0 && j > i)
	s.writeConfig(y[:i] + y[j+1:])
	ch = s.applied()
	assert.Equal(t, "delete", ch["strata/db2/full"])
	assert.Equal(t, "delete", ch["strata/db2/prune"])
	for _, id := range []string{"strata/db2/full", "strata/db2/prune"} {
		_, err := sc.GetHandle(ctx, id).Describe(ctx)
		require.ErrorAs(t, err, &nf, "%s is deleted", id)
	}
	_, err = sc.GetHandle(ctx, "reports/nightly").Describe(ctx)
	require.NoError(t, err, "an unrelated schedule is never touched")
	for id, op := range s.applied() {
		assert.Equal(t, "unchanged", op, id)
	}

	// ls --json lists Strata's schedules (the list is eventually consistent).
	var ls []schedule.Entry
	require.Eventually(t, func() bool {
		out, err := s.cli("schedule", "ls", "--json")
		if err != nil || json.Unmarshal([]byte(out), &ls) != nil {
			return false
		}
		return len(ls) == 5
	}, time.Minute, time.Second, "schedule ls shows db1's five schedules (with the drill)")
	for _, e := range ls {
		assert.Equal(t, "db1", e.Instance)
		assert.NotEqual(t, "reports/nightly", e.ID)
	}

	// Triggering runs a real backup of the real server, through the entity.
	out, err = s.cli("schedule", "trigger", "db1", "full")
	require.NoError(t, err, out)
	var run string
	require.Eventually(t, func() bool {
		d, err := sc.GetHandle(ctx, "strata/db1/full").Describe(ctx)
		if err == nil && len(d.Info.RecentActions) > 0 {
			run = d.Info.RecentActions[0].StartWorkflowResult.WorkflowID
		}
		return run != ""
	}, time.Minute, 500*time.Millisecond, "the trigger starts a run")
	assert.True(t, strings.HasPrefix(run, workflows.ScheduledWorkflowID("db1", "full")), run)
	var res workflows.ScheduledResult
	require.NoError(t, s.client.GetWorkflow(ctx, run, "").Get(ctx, &res))
	require.NotNil(t, res.Backup)
	assert.Equal(t, "full", res.Backup.Type)
	assert.Equal(t, workflows.BackupWorkflowID("db1", res.BackupID), res.WorkflowID)
	m, err := s.repo.ReadManifest(ctx, "db1", res.BackupID)
	require.NoError(t, err, "the scheduled backup is in the repository")
	assert.Greater(t, m.RawSize, int64(2<<20))

	// It went through the entity, which records who asked.
	v, err := s.client.QueryWorkflow(ctx, workflows.InstanceWorkflowID("db1"), "", workflows.InstanceStatusQuery)
	require.NoError(t, err)
	var st workflows.InstanceStatus
	require.NoError(t, v.Get(&st))
	require.NotEmpty(t, st.Recent)
	last := st.Recent[len(st.Recent)-1]
	assert.Equal(t, res.BackupID, last.BackupID)
	assert.Equal(t, "schedule/full", last.Ask.RequestedBy)
	assert.Equal(t, workflows.StateSucceeded, last.State)

	// pause/resume/trigger refuse a schedule that is not there.
	out, err = s.cli("schedule", "trigger", "db2", "full")
	require.Error(t, err)
	assert.Contains(t, out, "no schedule strata/db2/full")
}
