package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// The kill tests run the agent as a `strata agent` process and SIGKILL it in
// the middle of a backup or a restore: no cancellation, no cleanup, no
// goodbye to Temporal. The repository is the fake GCS of the test process,
// slowed down while the agent is to be killed, so that the kill lands in the
// middle of the transfer whatever the speed of the machine.

func TestKilledAgentBackupCompletesAfterRestart(t *testing.T) {
	g := newFakeGCS(t)
	s := newStack(t, withGCS(t, g, nil))
	db, want := s.seeded(32 << 20)
	// Let InnoDB write the seeded pages out, as a server does some time
	// after a burst: otherwise it rewrites most pages between the two
	// attempts and no chunk could be the same.
	flushCheckpoint(t, db)
	s.backup("f0", "full") // so that the catalog holds a backup all along

	s.agent.Stop() // the agent becomes a process that can be killed
	s.agent = nil
	agent := s.startAgentProcess()
	g.uploadDelay.Store(int64(250 * time.Millisecond))
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "backup/db1/k1", TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: "k1"})
	require.NoError(t, err)
	var p activities.BackupProgress
	// Past the redo log mariabackup streams first (different on every run,
	// never reusable), into the data files a re-run streams again.
	s.waitHeartbeat(run, "Backup", &p, func() bool { return p.Phase == "streaming" && p.Chunks >= 40 })
	s.requireCatalog("db1", "f0")

	// The scratch dir of the agent's mariabackup: SIGKILL leaves it behind.
	scratch := toolScratchDirs(t, agent.Process.Pid)
	assert.Len(t, scratch, 1, "the agent runs one mariabackup")
	t.Cleanup(func() {
		for _, d := range scratch {
			_ = os.RemoveAll(d)
		}
	})
	killAgent(t, agent)
	killedAt := time.Now()
	t.Logf("agent killed while streaming: %d chunks, %d raw / %d stored bytes uploaded", p.Chunks, p.RawBytes, p.StoredBytes)
	partial, err := s.repo.ListPartial(s.ctx, "db1")
	require.NoError(t, err)
	assert.Equal(t, []string{"k1"}, partial, "the dead agent left a partial upload")
	s.requireCatalog("db1", "f0")
	assert.Eventually(t, func() bool { return len(processesUsing(t, scratch)) == 0 }, time.Minute, 100*time.Millisecond,
		"the dead agent's mariabackup exits (its stdout is a broken pipe)")

	s.noticeDeadAgent(run, "Backup")
	g.uploadDelay.Store(0)
	restartedAt := time.Now()
	s.startAgentProcess()
	var raw json.RawMessage
	require.NoError(t, run.Get(s.ctx, &raw), "backup after the agent's restart")
	t.Logf("agent down for %.1fs; backup finished %.1fs after its restart", restartedAt.Sub(killedAt).Seconds(), time.Since(restartedAt).Seconds())
	var res workflows.BackupResult
	require.NoError(t, json.Unmarshal(raw, &res))
	s.requireCatalog("db1", "f0", "k1")
	partial, err = s.repo.ListPartial(s.ctx, "db1")
	require.NoError(t, err)
	assert.Empty(t, partial)

	// What the final attempt uploaded: the chunks written after the restart,
	// and the summary's own account (uploaded_bytes, reused_bytes).
	objs, err := s.repo.Backend().List(s.ctx, repo.BackupPrefix("db1", "k1")+"chunks/")
	require.NoError(t, err)
	var total, fresh int64
	for _, o := range objs {
		total += o.Size
		if !o.ModTime.Before(restartedAt) {
			fresh += o.Size
		}
	}
	var fields map[string]any
	require.NoError(t, json.Unmarshal(raw, &fields))
	t.Logf("final attempt: %d of %d stored chunk bytes (%.0f%%) written after the restart, by object time; summary: stored_size %d, uploaded_bytes %v, reused_bytes %v; attempts %v",
		fresh, total, 100*float64(fresh)/float64(max(total, 1)), res.StoredSize, fields["uploaded_bytes"], fields["reused_bytes"], s.activityAttempts(run.GetID()))
	assert.Greater(t, s.activityAttempts(run.GetID())["Backup"], 1, "the backup activity was retried")
	assert.Equal(t, res.StoredSize, total, "the stored chunks are those of the manifest")
	up, _ := fields["uploaded_bytes"].(float64)
	reused, _ := fields["reused_bytes"].(float64)
	assert.Equal(t, res.StoredSize, int64(up+reused), "uploaded + reused bytes = stored size")
	assert.Equal(t, fresh, int64(up), "uploaded_bytes = the bytes of the chunks written after the restart")
	assert.Less(t, int64(up), res.StoredSize, "the re-run uploads fewer bytes than the full size")
	assert.Greater(t, reused, 0.0, "the re-run reuses chunks the killed attempt stored")

	rdb, _ := s.restoreAndOpen("k1")
	got, err := demo.Checksums(s.ctx, rdb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(want, got))
	for _, d := range scratch {
		assert.NoDirExists(t, d, "the restarted agent removed the killed run's scratch dir (it held a password)")
	}
}

func TestKilledAgentRestoreCompletesAfterRestart(t *testing.T) {
	g := newFakeGCS(t)
	s := newStack(t, withGCS(t, g, nil))
	_, want := s.seeded(32 << 20)
	b := s.backup("b1", "full")

	s.agent.Stop()
	s.agent = nil
	agent := s.startAgentProcess()
	g.downloadDelay.Store(int64(200 * time.Millisecond))
	target := filepath.Join(t.TempDir(), "restored")
	port, err := testdb.FreePort()
	require.NoError(t, err)
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "restore/h1:" + target, TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "b1", TargetDir: target, Start: true, Port: port})
	require.NoError(t, err)
	var p activities.RestoreProgress
	s.waitHeartbeat(run, "RestoreBackup", &p, func() bool { return p.Phase == "downloading" && p.Chunks >= 3 })

	killAgent(t, agent)
	killedAt := time.Now()
	t.Logf("agent killed while downloading: %d of %d chunks, %d raw bytes written", p.Chunks, b.Chunks, p.RawBytes)
	_, err = os.Stat(target)
	assert.True(t, errors.Is(err, os.ErrNotExist), "the target is not touched before the backup is verified and prepared")
	assert.DirExists(t, filepath.Join(filepath.Dir(target), ".strata-restore-restored"), "the dead agent left its staging dir")

	s.noticeDeadAgent(run, "RestoreBackup")
	g.downloadDelay.Store(0)
	restartedAt := time.Now()
	s.startAgentProcess()
	var raw json.RawMessage
	require.NoError(t, run.Get(s.ctx, &raw), "restore after the agent's restart")
	var res workflows.RestoreResult
	require.NoError(t, json.Unmarshal(raw, &res))
	require.NotNil(t, res.Server)
	t.Cleanup(func() { stopPID(res.Server.PID) })
	var fields struct {
		Stats map[string]any `json:"stats"`
	}
	require.NoError(t, json.Unmarshal(raw, &fields))
	t.Logf("agent down for %.1fs; restore finished %.1fs after its restart (download %.2fs, prepare %.2fs); final attempt: %d of %d stored bytes downloaded, cached_bytes %v; attempts %v",
		restartedAt.Sub(killedAt).Seconds(), time.Since(restartedAt).Seconds(), res.Stats.FetchSeconds, res.Stats.PrepareSeconds,
		res.Stats.DownloadedBytes, b.StoredSize, fields.Stats["cached_bytes"], s.activityAttempts(run.GetID()))
	assert.Greater(t, s.activityAttempts(run.GetID())["RestoreBackup"], 1, "the restore activity was retried")
	if cached, ok := fields.Stats["cached_bytes"].(float64); ok {
		assert.Equal(t, b.StoredSize, res.Stats.DownloadedBytes+int64(cached), "downloaded + cached bytes = stored size")
	}

	rdb, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
	require.NoError(t, err)
	defer rdb.Close()
	got, err := demo.Checksums(s.ctx, rdb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(want, got))
	_, err = os.Stat(filepath.Join(filepath.Dir(target), ".strata-restore-restored"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "staging dir removed")
}

// toolScratchDirs returns the scratch dirs (the parent of --target-dir) of
// the tools that process pid runs.
func toolScratchDirs(t *testing.T, pid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var dirs []string
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 || f[1] != fmt.Sprint(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if dir, ok := strings.CutPrefix(arg, "--target-dir="); ok {
				dirs = append(dirs, filepath.Dir(dir))
			}
		}
	}
	return dirs
}

// processesUsing lists the pids of processes whose command line names one
// of dirs.
func processesUsing(t *testing.T, dirs []string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if strings.Contains(string(cmdline), d+"/") {
				pids = append(pids, e.Name())
				break
			}
		}
	}
	return pids
}

// killAgent SIGKILLs an agent process and reaps it.
func killAgent(t *testing.T, agent *exec.Cmd) {
	t.Helper()
	require.NoError(t, agent.Process.Kill())
	_ = agent.Wait()
}

// requireCatalog checks that the repository lists exactly the given backups
// (through the repository and `strata ls`), every one with status ok, and
// that VerifyWorkflow finds every listed backup intact.
func (s *stack) requireCatalog(instance string, ids ...string) {
	s.t.Helper()
	require.Equal(s.t, ids, s.backupIDs(instance), "backups listed")
	out, err := s.cli("ls", instance, "--json")
	require.NoError(s.t, err, out)
	var ls struct {
		Backups []struct {
			BackupID string `json:"backup_id"`
			Status   string `json:"status"`
		} `json:"backups"`
	}
	require.NoError(s.t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &ls), out)
	var listed []string
	for _, b := range ls.Backups {
		listed = append(listed, b.BackupID)
		require.Equal(s.t, "ok", b.Status, "strata ls: status of %s", b.BackupID)
	}
	sort.Strings(listed)
	require.Equal(s.t, ids, listed, "strata ls")
	v := s.verify(instance, "")
	require.True(s.t, v.OK, "every listed backup verifies: %v", v.Report.Problems)
	require.ElementsMatch(s.t, ids, v.Report.Checked)
}

// pendingActivity returns the workflow's pending activity of a type, or nil.
func (s *stack) pendingActivity(run client.WorkflowRun, activityType string) *workflowpb.PendingActivityInfo {
	s.t.Helper()
	d, err := s.client.DescribeWorkflowExecution(s.ctx, run.GetID(), run.GetRunID())
	require.NoError(s.t, err)
	for _, pa := range d.PendingActivities {
		if pa.GetActivityType().GetName() == activityType {
			return pa
		}
	}
	return nil
}

// waitHeartbeat waits until the pending activity's heartbeat details,
// decoded into progress, satisfy done.
func (s *stack) waitHeartbeat(run client.WorkflowRun, activityType string, progress any, done func() bool) {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		pa := s.pendingActivity(run, activityType)
		if pa == nil || pa.HeartbeatDetails == nil {
			return false
		}
		return converter.GetDefaultDataConverter().FromPayloads(pa.HeartbeatDetails, progress) == nil && done()
	}, 3*time.Minute, 100*time.Millisecond, "%s never reported the awaited progress (last %+v)", activityType, progress)
}

// noticeDeadAgent waits until Temporal, having heard no heartbeat from the
// killed agent for temporal.heartbeat_timeout (10s in the tests), schedules
// the next attempt of the activity.
func (s *stack) noticeDeadAgent(run client.WorkflowRun, activityType string) {
	s.t.Helper()
	pa := s.pendingActivity(run, activityType)
	require.NotNil(s.t, pa, "%s is pending", activityType)
	attempt := pa.GetAttempt()
	t0 := time.Now()
	require.Eventually(s.t, func() bool {
		pa := s.pendingActivity(run, activityType)
		return pa != nil && pa.GetAttempt() > attempt
	}, s.cfg.Temporal.HeartbeatTimeout.Std()+time.Minute, 200*time.Millisecond, "Temporal never retried %s after the agent died", activityType)
	s.t.Logf("Temporal scheduled attempt %d of %s %.1fs later", attempt+1, activityType, time.Since(t0).Seconds())
}
