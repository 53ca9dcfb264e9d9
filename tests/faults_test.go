package tests

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/gcs"
)

// TestGCSFaultsAreRetriedBackupAndRestoreComplete runs a backup and a
// restore against GCS while a fifth of all requests fail with HTTP 503 and
// every request is 20 ms late; on top, 5% of the uploads that do reach the
// server lose their response (the client sees a 503 for an upload that
// happened). The worker and the agent share the faulty backend.
func TestGCSFaultsAreRetriedBackupAndRestoreComplete(t *testing.T) {
	g := newFakeGCS(t)
	lost := &gcs.FaultTransport{Base: http.DefaultTransport, Rate: 0.05, Seed: 7, LoseResponses: true, Match: gcs.IsUpload}
	faults := &gcs.FaultTransport{Base: lost, Rate: 0.2, Seed: 42, Latency: 20 * time.Millisecond}
	openRepo := func(ctx context.Context, cfg *config.Config) (*repo.Repo, error) {
		b, err := gcs.New(ctx, gcs.Options{
			Bucket: cfg.Storage.GCS.Bucket, Prefix: cfg.Storage.GCS.Prefix, Endpoint: g.http.URL,
			HTTPClient: &http.Client{Transport: faults},
			// Quicker than the defaults (1 s, 32 s), as many attempts.
			Retry: gcs.RetryOptions{Initial: 50 * time.Millisecond, Max: time.Second},
		})
		if err != nil {
			return nil, err
		}
		return repo.New(b), nil
	}
	s := newStack(t, withGCS(t, g, openRepo))
	_, want := s.seeded(16 << 20)

	before := faults.Faults()
	b := s.backup("f1", "full")
	t.Logf("backup: %d raw / %d stored bytes in %d chunks, %.1f MB/s; %d requests so far, %d failed with 503, %d uploads lost their response",
		b.RawSize, b.StoredSize, b.Chunks, b.ThroughputMBps, faults.Requests(), faults.Faults(), lost.Faults())
	require.Greater(t, faults.Faults()-before, int64(0), "faults were injected during the backup")

	rdb, res := s.restoreAndOpen("f1")
	got, err := demo.Checksums(s.ctx, rdb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(want, got))
	t.Logf("restore: %d bytes downloaded in %.2fs", res.Stats.DownloadedBytes, res.Stats.FetchSeconds)

	v := s.verify("db1", "")
	assert.True(t, v.OK, "%v", v.Report.Problems)
	t.Logf("injected faults: %d of %d requests failed with 503 (%d uploads lost their response)",
		faults.Faults(), faults.Requests(), lost.Faults())
	require.Greater(t, faults.Faults(), int64(0))
	// The storage layer's retries hid the faults: no activity had to be retried.
	for _, id := range []string{"backup/db1/f1", "restore/h1:" + res.Stats.TargetDir} {
		attempts := s.activityAttempts(id)
		t.Logf("%s: activity attempts %v", id, attempts)
		for typ, n := range attempts {
			assert.Equal(t, 1, n, "%s: attempts of %s", id, typ)
		}
	}
}

// activityAttempts returns, for each activity type a workflow ran, the
// highest attempt number that started.
func (s *stack) activityAttempts(workflowID string) map[string]int {
	s.t.Helper()
	out := map[string]int{}
	types := map[int64]string{}
	it := s.client.GetWorkflowHistory(s.ctx, workflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(s.t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			types[ev.EventId] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			typ := types[a.GetScheduledEventId()]
			out[typ] = max(out[typ], int(a.GetAttempt()))
		}
	}
	return out
}
