package retention_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/retention"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// A backup whose retried attempt reuses chunks stored long ago has nothing
// but old objects; its live lease keeps the cleanup away however old they
// are. Once the lease has expired (its agent died), the age rule applies,
// counted from the last renewal.
func TestGCPartialLeavesLeasedUploads(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	old := now.Add(-48 * time.Hour)
	tb := &timedBackend{Backend: memory.New(), modTimes: map[string]time.Time{}}
	r := repo.New(tb)
	for _, id := range []string{"running", "dead", "none"} {
		for _, k := range []string{"chunks/00000000.zst", "chunks/00000001.zst", "salt.json"} {
			key := repo.BackupPrefix(instance, id) + k
			putObj(t, tb, key)
			tb.modTimes[key] = old
		}
	}
	holder := repo.LeaseRecord{Run: repo.Run{WorkflowID: "backup/db1/x", RunID: "r1"}, Attempt: 2, Host: "h1"}
	// running: renewed a minute ago, holds 5 more minutes. Its lease
	// object is backdated too: only the record's times count.
	_, err := r.AcquireLease(ctx, instance, "running", holder, 6*time.Minute, now.Add(-time.Minute))
	require.NoError(t, err)
	// dead: its last renewal was two days ago.
	_, err = r.AcquireLease(ctx, instance, "dead", holder, 6*time.Minute, old)
	require.NoError(t, err)
	for _, k := range keys(t, tb, "") {
		if _, set := tb.modTimes[k]; !set {
			tb.modTimes[k] = old
		}
	}

	removed, err := retention.GCPartial(ctx, r, instance, time.Hour, now, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"dead", "none"}, removed)
	assert.Len(t, keys(t, tb, repo.BackupPrefix(instance, "running")), 4, "nothing of the leased upload is deleted")
	assert.Empty(t, keys(t, tb, repo.BackupPrefix(instance, "dead")), "an expired lease goes with its upload")

	// The running backup's agent dies: once the lease has expired (at
	// now+5m), the age rule applies, and every object here is old.
	removed, err = retention.GCPartial(ctx, r, instance, time.Hour, now.Add(5*time.Minute-time.Second), false)
	require.NoError(t, err)
	assert.Empty(t, removed)
	removed, err = retention.GCPartial(ctx, r, instance, time.Hour, now.Add(5*time.Minute), false)
	require.NoError(t, err)
	assert.Equal(t, []string{"running"}, removed)
}

// An expired lease whose last renewal is recent still protects the upload
// through the age rule: lease objects are objects of the directory.
func TestGCPartialExpiredLeaseAgesFromRenewal(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	putObj(t, mem, repo.BackupPrefix(instance, "b")+"chunks/00000000.zst")
	now := time.Now()
	// A lease that expired at once (renewed an hour in the past by a
	// skewed clock), stored now.
	_, err := r.AcquireLease(ctx, instance, "b", repo.LeaseRecord{Host: "h1"}, time.Minute, now.Add(-time.Hour))
	require.NoError(t, err)
	removed, err := retention.GCPartial(ctx, r, instance, 30*time.Minute, now.Add(20*time.Minute), false)
	require.NoError(t, err)
	assert.Empty(t, removed)
	removed, err = retention.GCPartial(ctx, r, instance, 30*time.Minute, now.Add(40*time.Minute), false)
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, removed)
	assert.Empty(t, keys(t, mem, ""))
}
