package repo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
)

func leaseKeys(t *testing.T, mem *memory.Backend, id string) []string {
	t.Helper()
	objs, err := mem.List(context.Background(), repo.LeasePrefix("db1", id))
	require.NoError(t, err)
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

func TestLeaseAcquireRenewRelease(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	run := repo.Run{WorkflowID: "backup/db1/b1", RunID: "run-1"}
	l, err := r.AcquireLease(ctx, "db1", "b1", repo.LeaseRecord{Run: run, Attempt: 1, Host: "h1"}, 3*time.Minute, t0)
	require.NoError(t, err)
	require.Len(t, leaseKeys(t, mem, "b1"), 1)

	recs, err := r.ReadLeases(ctx, "db1", "b1")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, repo.LeaseRecord{Run: run, Attempt: 1, Host: "h1", Renewed: t0, Until: t0.Add(3 * time.Minute)}, recs[0])
	live, ok := repo.LiveLease(recs, t0.Add(3*time.Minute-time.Nanosecond))
	require.True(t, ok)
	assert.Equal(t, run, live.Run)
	_, ok = repo.LiveLease(recs, t0.Add(3*time.Minute))
	assert.False(t, ok, "expired at Until")

	assert.False(t, l.Due(t0.Add(59*time.Second)))
	assert.True(t, l.Due(t0.Add(time.Minute)), "due after a third of the ttl")
	first := leaseKeys(t, mem, "b1")
	require.NoError(t, l.Renew(ctx, t0.Add(time.Minute)))
	after := leaseKeys(t, mem, "b1")
	require.Len(t, after, 1, "a renewal replaces the lease object")
	assert.NotEqual(t, first, after, "objects are immutable: a new one per renewal")
	recs, err = r.ReadLeases(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.Equal(t, t0.Add(4*time.Minute), recs[0].Until)
	assert.Equal(t, t0.Add(4*time.Minute), l.Record().Until)

	require.NoError(t, r.DeleteLeases(ctx, "db1", "b1"))
	assert.Empty(t, leaseKeys(t, mem, "b1"))
}

func TestLeaseOfAnotherRunIsRefused(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	a := repo.LeaseRecord{Run: repo.Run{WorkflowID: "w", RunID: "run-a"}, Attempt: 1, Host: "h1"}
	b := repo.LeaseRecord{Run: repo.Run{WorkflowID: "w", RunID: "run-b"}, Attempt: 1, Host: "h2"}
	_, err := r.AcquireLease(ctx, "db1", "b1", a, 5*time.Minute, t0)
	require.NoError(t, err)

	_, err = r.AcquireLease(ctx, "db1", "b1", b, 5*time.Minute, t0.Add(time.Minute))
	require.ErrorIs(t, err, repo.ErrLeaseHeld)
	assert.Contains(t, err.Error(), `workflow "w" run "run-a", attempt 1 on host "h1"`)
	assert.Len(t, leaseKeys(t, mem, "b1"), 1, "the holder's lease is untouched")

	// A later attempt of the same run takes over: the earlier one is dead.
	a.Attempt = 2
	_, err = r.AcquireLease(ctx, "db1", "b1", a, 5*time.Minute, t0.Add(2*time.Minute))
	require.NoError(t, err)
	recs, err := r.ReadLeases(ctx, "db1", "b1")
	require.NoError(t, err)
	require.Len(t, recs, 1, "the lease taken over is deleted")
	assert.Equal(t, int32(2), recs[0].Attempt)

	// Another run may take an expired lease.
	_, err = r.AcquireLease(ctx, "db1", "b1", b, 5*time.Minute, t0.Add(7*time.Minute))
	require.NoError(t, err)
	recs, err = r.ReadLeases(ctx, "db1", "b1")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "run-b", recs[0].RunID)

	// A lease without a run (outside Temporal) is never the same run.
	_, err = r.AcquireLease(ctx, "db1", "b1", repo.LeaseRecord{Host: "h1"}, 5*time.Minute, t0.Add(8*time.Minute))
	require.ErrorIs(t, err, repo.ErrLeaseHeld)
}

// A crash between storing a renewal and deleting the previous object
// leaves two; the lease lasts until the later Until. A planted lease that
// claims to hold for days, or an object that is not a lease, holds nothing.
func TestLeaseLeftoversAndPlantedLeases(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	pfx := repo.LeasePrefix("db1", "b1")
	putJSON := func(name, body string) {
		require.NoError(t, mem.Put(ctx, pfx+name, strings.NewReader(body), int64(len(body))))
	}
	putJSON("1.json", `{"workflow_id":"w","run_id":"r","renewed":"2024-06-01T00:00:00Z","until":"2024-06-01T00:05:00Z"}`)
	putJSON("2.json", `{"workflow_id":"w","run_id":"r","renewed":"2024-06-01T00:02:00Z","until":"2024-06-01T00:07:00Z"}`)
	putJSON("3.json", `{"workflow_id":"x","run_id":"y","renewed":"2024-06-01T00:00:00Z","until":"2099-01-01T00:00:00Z"}`)
	putJSON("4.json", `not json`)
	recs, err := r.ReadLeases(ctx, "db1", "b1")
	require.NoError(t, err)
	require.Len(t, recs, 3, "the malformed object is skipped")
	l, ok := repo.LiveLease(recs, t0.Add(6*time.Minute))
	require.True(t, ok)
	assert.Equal(t, t0.Add(7*time.Minute), l.Until)
	_, ok = repo.LiveLease(recs, t0.Add(7*time.Minute))
	assert.False(t, ok, "a lease longer than MaxLeaseTTL is not live")
}

func TestLeaseTTLBounds(t *testing.T) {
	r := repo.New(memory.New())
	for _, ttl := range []time.Duration{0, -time.Second, repo.MaxLeaseTTL + time.Second} {
		_, err := r.AcquireLease(context.Background(), "db1", "b1", repo.LeaseRecord{}, ttl, t0)
		require.Error(t, err, ttl)
	}
	_, err := r.AcquireLease(context.Background(), "db1", "../x", repo.LeaseRecord{}, time.Minute, t0)
	require.Error(t, err)
}

func TestReleasedLeaseIsNotRenewed(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	l, err := r.AcquireLease(ctx, "db1", "b1", repo.LeaseRecord{Host: "h1"}, time.Minute, t0)
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	assert.Empty(t, leaseKeys(t, mem, "b1"))
	assert.False(t, l.Due(t0.Add(time.Hour)))
	require.Error(t, l.Renew(ctx, t0.Add(time.Minute)), "a late heartbeat stores nothing")
	assert.Empty(t, leaseKeys(t, mem, "b1"))
}

// racingLease stores another run's lease just before the first lease
// object is stored: that run read no lease either and wrote first.
type racingLease struct {
	*memory.Backend
	other []byte
	done  bool
}

func (b *racingLease) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if !b.done && strings.HasPrefix(key, repo.LeasePrefix("db1", "b1")) {
		b.done = true
		other := repo.LeasePrefix("db1", "b1") + "00000000000000000001-other.json"
		if err := b.Backend.Put(ctx, other, bytes.NewReader(b.other), int64(len(b.other))); err != nil {
			return err
		}
	}
	return b.Backend.Put(ctx, key, r, size)
}

// Two runs that take the lease at the same time never both go on, and
// neither deletes the other's live lease.
func TestLeaseAcquireRaceWithAnotherRun(t *testing.T) {
	ctx := context.Background()
	other, err := json.Marshal(repo.LeaseRecord{Run: repo.Run{WorkflowID: "w2", RunID: "run-b"}, Attempt: 1, Host: "h2",
		Renewed: t0, Until: t0.Add(5 * time.Minute)})
	require.NoError(t, err)
	mem := &racingLease{Backend: memory.New(), other: other}
	r := repo.New(mem)
	a := repo.LeaseRecord{Run: repo.Run{WorkflowID: "w1", RunID: "run-a"}, Attempt: 1, Host: "h1"}
	_, err = r.AcquireLease(ctx, "db1", "b1", a, 5*time.Minute, t0)
	require.ErrorIs(t, err, repo.ErrLeaseHeld)
	recs, err := r.ReadLeases(ctx, "db1", "b1")
	require.NoError(t, err)
	require.Len(t, recs, 1, "the other run's lease is kept, ours withdrawn")
	assert.Equal(t, "run-b", recs[0].RunID)
	_, live := repo.LiveLease(recs, t0.Add(time.Minute))
	assert.True(t, live)
}

// A lease renewed in the future (a planted object, or an agent whose clock
// is far off) does not hold the directory until then.
func TestLeaseRenewedFarInTheFutureIsNotLive(t *testing.T) {
	future := t0.AddDate(50, 0, 0)
	l := repo.LeaseRecord{Renewed: future, Until: future.Add(5 * time.Minute)}
	assert.False(t, l.LiveAt(t0))
	near := repo.LeaseRecord{Renewed: t0.Add(time.Minute), Until: t0.Add(6 * time.Minute)}
	assert.True(t, near.LiveAt(t0), "a little clock skew still holds")
}
