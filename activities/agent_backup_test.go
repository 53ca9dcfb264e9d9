package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
)

// The run that the test activity environment reports.
var testRun = repo.Run{WorkflowID: "default-test-workflow-id", RunID: "default-test-run-id"}

func runBackup(t *testing.T, a *Agent, p BackupParams) (*BackupSummary, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	v, err := env.ExecuteActivity(a.Backup, p)
	if err != nil {
		return nil, err
	}
	var sum BackupSummary
	require.NoError(t, v.Get(&sum))
	return &sum, nil
}

// A manifest that another workflow run wrote (or an older Strata, which
// recorded no run) is an older backup with the same id: it is refused, not
// reported as this backup's success. The run's own manifest (an attempt
// that died after writing it) is accepted, and its lease released.
func TestBackupIDOfAnotherRunIsTaken(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		run  repo.Run
		want string // error type; empty: accepted
	}{
		"written by this run":          {testRun, ""},
		"same workflow id, other run":  {repo.Run{WorkflowID: testRun.WorkflowID, RunID: "an-older-run"}, ErrBackupIDTaken},
		"other workflow":               {repo.Run{WorkflowID: "backup/db1/weekly", RunID: "r"}, ErrBackupIDTaken},
		"older manifest without a run": {repo.Run{}, ErrBackupIDTaken},
	} {
		t.Run(name, func(t *testing.T) {
			cat := testCatalog(t, 0)
			m := bk("weekly", manifest.TypeFull, "", 0, 100, 1)
			m.WorkflowID, m.RunID = tc.run.WorkflowID, tc.run.RunID
			require.NoError(t, cat.Repo.WriteManifest(ctx, m))
			_, err := cat.Repo.AcquireLease(ctx, "db1", "weekly", repo.LeaseRecord{Run: testRun, Host: "h1"}, 60e9, t0)
			require.NoError(t, err)
			a := &Agent{Host: "h1", Config: cat.Config, Repo: cat.Repo}

			sum, err := runBackup(t, a, BackupParams{Instance: "db1", BackupID: "weekly", Type: manifest.TypeFull})
			if tc.want == "" {
				require.NoError(t, err)
				assert.Equal(t, "weekly", sum.BackupID)
				recs, err := cat.Repo.ReadLeases(ctx, "db1", "weekly")
				require.NoError(t, err)
				assert.Empty(t, recs, "the lease is released")
				return
			}
			require.Error(t, err)
			assert.Equal(t, tc.want, appErrType(err), "%v", err)
			var ae *temporal.ApplicationError
			require.True(t, errors.As(err, &ae))
			assert.True(t, ae.NonRetryable())
			assert.Contains(t, err.Error(), `backup id "weekly" of instance db1 is already taken`)
			assert.Contains(t, err.Error(), "choose another backup id")
		})
	}
}

func TestFromLSNMismatchIsNotRetryable(t *testing.T) {
	p := BackupParams{Instance: "db1", BackupID: "i1", Type: manifest.TypeIncremental, ParentID: "f1", FromLSN: 100}
	require.NoError(t, checkFromLSN("mariabackup", p, 100))
	err := checkFromLSN("mariabackup", p, 90)
	require.Error(t, err)
	assert.Equal(t, ErrLSNMismatch, appErrType(err))
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	assert.True(t, ae.NonRetryable(), "the tool would start at the same LSN again")
	assert.Contains(t, err.Error(), "from_lsn 90 for incremental backup i1 from LSN 100")
	require.NoError(t, checkFromLSN("mariabackup", BackupParams{Type: manifest.TypeFull}, 7))
}

// A missing object before the manifest is written fails the attempt
// retryably: the retry uploads it again.
func TestIncompleteUploadIsRetryable(t *testing.T) {
	err := classify(fmt.Errorf("before writing the manifest of b1: %w", repo.ErrIncompleteUpload))
	assert.Empty(t, appErrType(err))
	assert.ErrorIs(t, err, repo.ErrIncompleteUpload)
}

// Catalog reads that fail on the repository's content are classified: a
// corrupt manifest is CorruptBackup at once, not five retries of a plain
// error.
func TestCatalogReadErrorsAreClassified(t *testing.T) {
	ctx := context.Background()
	corrupt := func(t *testing.T) *Catalog {
		cat := testCatalog(t, 0, bk("f1", manifest.TypeFull, "", 0, 100, 1))
		body := `{"format_version": 1, "backup_id": "f2"}`
		require.NoError(t, cat.Repo.Backend().Put(ctx, repo.ManifestKey("db1", "f2"), strings.NewReader(body), int64(len(body))))
		return cat
	}
	for name, call := range map[string]func(*Catalog) error{
		"PlanBackup": func(c *Catalog) error {
			_, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: manifest.TypeIncremental})
			return err
		},
		"ResolveChain": func(c *Catalog) error {
			_, err := c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "f1"})
			return err
		},
		"PlanRetention": func(c *Catalog) error {
			_, err := c.PlanRetention(ctx, RetentionRequest{Instance: "db1"})
			return err
		},
		"ArchiveWindows": func(c *Catalog) error {
			_, err := c.ArchiveWindows(ctx, InstanceRequest{Instance: "db1"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := call(corrupt(t))
			require.Error(t, err)
			assert.Equal(t, ErrCorruptBackup, appErrType(err), "%v", err)
			assert.Contains(t, err.Error(), "f2")
		})
	}
}
