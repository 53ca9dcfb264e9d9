package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/workflows"
)

func TestStatusPrint(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	st := &instanceStatus{
		Instance: "db1", Host: "h1",
		LastFull:   &backupRef{BackupID: "20261201T010000Z", Type: "full", EndTime: now.Add(-11 * time.Hour), RawSize: 3 << 30},
		LastVerify: &workflowRef{WorkflowID: "verify/db1/x", Status: "completed", CloseTime: now.Add(-90 * time.Second)},
		Archive:    archiveBrief{State: "running", LagMs: 120, ArchivedUpTo: now.Add(-2 * time.Second), Gaps: 1},
		PITR:       &binlog.Window{FromBackup: "20261201T010000Z", FromTime: now.Add(-11 * time.Hour), ToTime: now.Add(-2 * time.Second), ToFile: "bin.000002", ToPos: 99},
		Schedules:  []scheduleRef{{Kind: "full", ID: workflows.ScheduleID("db1", "full"), Next: []time.Time{now.Add(13 * time.Hour)}}, {Kind: "verify", Paused: true}},
		Running:    []workflowRef{{WorkflowID: "backup/db1/b2", Type: workflows.BackupWorkflowName, StartTime: now.Add(-time.Minute)}},
		Queued:     []workflows.InstanceRun{{BackupID: "b3", State: "queued", Ask: workflows.BackupAsk{Type: "incremental", RequestedBy: "migrator"}, AcceptedAt: now.Add(-5 * time.Second)}},
		Errors:     []string{"schedule strata/db1/prune: unavailable"},
	}
	var out bytes.Buffer
	st.print(&out, now)
	s := out.String()
	for _, want := range []string{
		"db1 (host h1)\n",
		"last full         full 20261201T010000Z, ended 2026-12-01T01:00:00Z (11h00m ago), 3.0GiB",
		"last incremental  none",
		"last verify       completed 2026-12-01T11:58:30Z (1m30s ago), workflow verify/db1/x",
		"archive           running, lag 120 ms, archived up to 2026-12-01T11:59:58Z (2s ago), 1 gaps",
		"PITR window       2026-12-01T01:00:00Z (backup 20261201T010000Z) to 2026-12-01T11:59:58Z (bin.000002:99, GTID )",
		"next full         2026-12-02T01:00:00Z (in 13h00m)",
		"next verify       none, paused",
		"running           backup/db1/b2 (BackupWorkflow, started 1m00s ago)",
		"queued            incremental b3, queued, accepted 5s ago, by migrator",
		"unavailable       schedule strata/db1/prune: unavailable",
	} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "\x1b")

	var empty bytes.Buffer
	(&instanceStatus{Instance: "db2", Host: "h2", Archive: archiveBrief{State: "not started"}}).print(&empty, now)
	for _, want := range []string{"last full         none", "last verify       none", "archive           not started", "PITR window       none",
		"next runs         no schedules", "running           nothing"} {
		assert.Contains(t, empty.String(), want)
	}
	assert.False(t, strings.Contains(empty.String(), "queued"))
}

func TestStatusLimitersAndPermitWaits(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	printLimiters(&out, []activities.LimiterState{
		{ID: "limiter/fleet/backup", Max: 2, Holders: []activities.Permit{{WorkflowID: "backup/db1/a"}, {WorkflowID: "backup/db2/b"}},
			Waiters: []activities.Permit{{WorkflowID: "backup/db3/c", Instance: "db3", Since: now.Add(-42 * time.Second)}}},
		{ID: "limiter/storage/local:/r", Max: 5, Holders: []activities.Permit{}, Waiters: []activities.Permit{}},
	}, now)
	assert.Equal(t, "limiter limiter/fleet/backup: 2 of 2 permits held, 1 waiting, the first waiting since 42s ago\n"+
		"limiter limiter/storage/local:/r: 0 of 5 permits held, 0 waiting\n\n", out.String())

	out.Reset()
	printLimiters(&out, nil, now)
	assert.Empty(t, out.String(), "no limits configured: no limiter lines")

	out.Reset()
	(&instanceStatus{Instance: "db3", Host: "h3", WaitingForPermit: []activities.Permit{{WorkflowID: "backup/db3/c", Kind: "backup", Since: now.Add(-42 * time.Second)}}}).print(&out, now)
	assert.Contains(t, out.String(), "waiting           backup/db3/c for a fleet permit (backup, asked 42s ago)")
}
