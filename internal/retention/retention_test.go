package retention_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/retention"
)

const instance = "db1"

var day0 = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// id names a backup by its start time.
func id(start time.Time) string { return start.UTC().Format("20060102T150405Z") }

// at returns the start time of hour h of day d of the generated catalog.
func at(d, h int) time.Time {
	return day0.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour)
}

func mk(typ string, start time.Time, parent *manifest.Manifest, from, to uint64) *manifest.Manifest {
	m := &manifest.Manifest{
		FormatVersion: manifest.FormatVersion,
		BackupID:      id(start),
		Instance:      instance,
		Type:          typ,
		StartTime:     start,
		EndTime:       start.Add(10 * time.Minute),
		FromLSN:       from,
		ToLSN:         to,
		Compression:   "zstd",
		Chunks:        []manifest.Chunk{},
	}
	if parent != nil {
		m.ParentID = parent.BackupID
	}
	return m
}

// nightly generates a catalog of days days: each day a full at midnight, an
// incremental at 06:00 (parent: the full), a differential at noon (parent:
// the full) and an incremental at 18:00 (parent: the differential). Each
// backup takes 10 minutes.
func nightly(days int) []*manifest.Manifest {
	var out []*manifest.Manifest
	var lsn uint64
	next := func() uint64 { lsn += 1000; return lsn }
	for d := range days {
		full := mk(manifest.TypeFull, at(d, 0), nil, 0, next())
		inc6 := mk(manifest.TypeIncremental, at(d, 6), full, full.ToLSN, next())
		diff := mk(manifest.TypeDifferential, at(d, 12), full, full.ToLSN, next())
		inc18 := mk(manifest.TypeIncremental, at(d, 18), diff, diff.ToLSN, next())
		out = append(out, full, inc6, diff, inc18)
	}
	return out
}

// lastEnd is the end time of the last backup of a catalog of days days.
func lastEnd(days int) time.Time { return at(days-1, 18).Add(10 * time.Minute) }

func ids(actions []retention.Action) []string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		out = append(out, a.BackupID)
	}
	return out
}

func reasonOf(t *testing.T, p *retention.Plan, backupID string) string {
	t.Helper()
	for _, a := range slices.Concat(p.Keep, p.Delete) {
		if a.BackupID == backupID {
			return a.Reason
		}
	}
	t.Fatalf("backup %s is not in the plan", backupID)
	return ""
}

// dayIDs returns the IDs of the backups of days from..to (inclusive) of a
// nightly catalog, in chronological order.
func dayIDs(from, to int) []string {
	var out []string
	for d := from; d <= to; d++ {
		for _, h := range []int{0, 6, 12, 18} {
			out = append(out, id(at(d, h)))
		}
	}
	return out
}

// checkInvariants verifies the properties every plan must have.
func checkInvariants(t *testing.T, catalog []*manifest.Manifest, p *retention.Plan) {
	t.Helper()
	byID := make(map[string]*manifest.Manifest)
	for _, m := range catalog {
		byID[m.BackupID] = m
	}
	parentOf := func(x string) string {
		m := byID[x]
		if m.Type == manifest.TypeFull {
			return ""
		}
		if _, ok := byID[m.ParentID]; !ok {
			return ""
		}
		return m.ParentID
	}
	isAncestor := func(a, x string) bool { // a is a strict ancestor of x
		for y := parentOf(x); y != ""; y = parentOf(y) {
			if y == a {
				return true
			}
		}
		return false
	}

	// Keep and Delete partition the catalog.
	all := slices.Concat(ids(p.Keep), ids(p.Delete))
	require.Len(t, all, len(catalog))
	seen := make(map[string]bool)
	for _, x := range all {
		require.Contains(t, byID, x)
		require.False(t, seen[x], "%s appears twice in the plan", x)
		seen[x] = true
	}
	kept := make(map[string]bool)
	for _, a := range p.Keep {
		kept[a.BackupID] = true
		assert.Equal(t, byID[a.BackupID].Type, a.Type)
		assert.NotEmpty(t, a.Reason)
	}
	// Keep is in chronological order.
	assert.True(t, slices.IsSortedFunc(p.Keep, func(a, b retention.Action) int {
		return byID[a.BackupID].StartTime.Compare(byID[b.BackupID].StartTime)
	}))
	// The chain of every kept backup is kept.
	for x := range kept {
		for y := parentOf(x); y != ""; y = parentOf(y) {
			assert.True(t, kept[y], "kept %s needs %s, which is deleted", x, y)
		}
	}
	// Children first, for every pair.
	for i := range p.Delete {
		assert.Equal(t, byID[p.Delete[i].BackupID].Type, p.Delete[i].Type)
		assert.NotEmpty(t, p.Delete[i].Reason)
		for j := i + 1; j < len(p.Delete); j++ {
			assert.False(t, isAncestor(p.Delete[i].BackupID, p.Delete[j].BackupID),
				"%s is deleted before %s, which depends on it", p.Delete[i].BackupID, p.Delete[j].BackupID)
		}
	}
	// Oldest first among the backups free to go: at each step, the backup
	// deleted is the oldest whose dependants are all deleted.
	deleted := make(map[string]bool)
	for k, a := range p.Delete {
		var free []*manifest.Manifest
		for _, b := range p.Delete[k:] {
			ok := true
			for _, m := range catalog {
				if parentOf(m.BackupID) == b.BackupID && !deleted[m.BackupID] {
					ok = false
				}
			}
			if ok {
				free = append(free, byID[b.BackupID])
			}
		}
		oldest := slices.MinFunc(free, func(a, b *manifest.Manifest) int {
			if c := a.StartTime.Compare(b.StartTime); c != 0 {
				return c
			}
			return strings.Compare(a.BackupID, b.BackupID)
		})
		assert.Equal(t, oldest.BackupID, a.BackupID, "step %d", k)
		deleted[a.BackupID] = true
	}
}

func TestCompute(t *testing.T) {
	const days = 21 // three weeks
	catalog := nightly(days)
	end := lastEnd(days)
	last := days - 1

	orphanCatalog := func() []*manifest.Manifest {
		c := nightly(3)
		ghost := mk(manifest.TypeFull, at(3, 0), nil, 0, 99000) // not in the catalog
		orphan := mk(manifest.TypeIncremental, at(3, 6), ghost, ghost.ToLSN, 99100)
		child := mk(manifest.TypeIncremental, at(3, 18), orphan, orphan.ToLSN, 99200)
		noParent := mk(manifest.TypeIncremental, at(1, 3), nil, 5, 6)
		return append(c, orphan, child, noParent)
	}

	tests := []struct {
		name    string
		catalog []*manifest.Manifest
		policy  retention.Policy
		now     time.Time
		keep    []string          // expected Keep IDs, in order
		reasons map[string]string // backup ID -> expected substring of its reason
		check   func(t *testing.T, p *retention.Plan)
	}{
		{
			name:    "empty catalog",
			catalog: nil,
			policy:  retention.Policy{KeepFull: 2, KeepDays: 7, KeepMin: 3},
			now:     end,
			keep:    []string{},
		},
		{
			name:    "all-zero policy keeps everything",
			catalog: catalog,
			now:     end.Add(1000 * 24 * time.Hour),
			keep:    dayIDs(0, last),
			reasons: map[string]string{id(at(0, 0)): "no retention limit"},
		},
		{
			name:    "keep_min alone sets no limit",
			catalog: catalog,
			policy:  retention.Policy{KeepMin: 3},
			now:     end.Add(1000 * 24 * time.Hour),
			keep:    dayIDs(0, last),
		},
		{
			name:    "keep_full counts only fulls and keeps their dependants",
			catalog: catalog,
			policy:  retention.Policy{KeepFull: 2},
			now:     end,
			keep:    dayIDs(last-1, last),
			reasons: map[string]string{
				id(at(last, 0)):      "newest 2 fulls",
				id(at(last-1, 0)):    "newest 2 fulls",
				id(at(last-1, 18)):   "chain of full " + id(at(last-1, 0)) + " (newest 2 fulls)",
				id(at(last-2, 0)):    "expired",
				id(at(last-2, 18)):   "not in the chain of the newest 2 fulls",
				id(at(last, 6)):      "chain of full " + id(at(last, 0)),
				id(at(last-10, 12)):  "not needed by a retained backup",
				id(at(last-20+1, 6)): "expired",
			},
		},
		{
			name:    "keep_full 1 when the newest backups are incrementals",
			catalog: catalog,
			policy:  retention.Policy{KeepFull: 1},
			now:     end,
			keep:    dayIDs(last, last),
			reasons: map[string]string{id(at(last, 0)): "newest full"},
		},
		{
			name:    "keep_full beyond the number of fulls keeps everything",
			catalog: catalog,
			policy:  retention.Policy{KeepFull: 100},
			now:     end,
			keep:    dayIDs(0, last),
		},
		{
			name:    "keep_days: end time at the cutoff is expired",
			catalog: catalog,
			policy:  retention.Policy{KeepDays: 1},
			now:     end, // cutoff = end of the 18:00 incremental of the day before
			keep:    dayIDs(last, last),
			reasons: map[string]string{
				id(at(last, 0)):    "within 1 days",
				id(at(last-1, 18)): "older than 1 days",
			},
		},
		{
			name:    "keep_days: one nanosecond inside keeps the chain, not its siblings",
			catalog: catalog,
			policy:  retention.Policy{KeepDays: 1},
			now:     end.Add(-time.Nanosecond),
			keep: []string{
				id(at(last-1, 0)), id(at(last-1, 12)), id(at(last-1, 18)),
				id(at(last, 0)), id(at(last, 6)), id(at(last, 12)), id(at(last, 18)),
			},
			reasons: map[string]string{
				// Expired fulls and differentials with live dependants are kept.
				id(at(last-1, 0)):  "needed by incremental " + id(at(last-1, 18)),
				id(at(last-1, 12)): "needed by incremental " + id(at(last-1, 18)),
				id(at(last-1, 18)): "within 1 days",
				id(at(last-1, 6)):  "expired",
			},
		},
		{
			name:    "keep_days 7",
			catalog: catalog,
			policy:  retention.Policy{KeepDays: 7},
			now:     at(last, 21),
			// cutoff = day last-7 21:00: day last-7's backups all ended before.
			keep: dayIDs(last-6, last),
		},
		{
			name:    "keep_days: the full ending after the cutoff keeps nothing older",
			catalog: catalog,
			policy:  retention.Policy{KeepDays: 3},
			now:     at(last-3+1, 0).Add(5 * time.Minute), // cutoff = 5 minutes into day last-5
			keep:    dayIDs(last-5, last),
			reasons: map[string]string{id(at(last-5, 0)): "within 3 days"},
		},
		{
			name:    "keep_min floor when everything is expired",
			catalog: catalog,
			policy:  retention.Policy{KeepDays: 1, KeepMin: 3},
			now:     end.Add(30 * 24 * time.Hour),
			keep:    dayIDs(last, last),
			reasons: map[string]string{
				id(at(last, 18)): "keep_min 3",
				id(at(last, 12)): "keep_min 3",
				id(at(last, 6)):  "keep_min 3",
				id(at(last, 0)):  "needed by incremental " + id(at(last, 6)),
			},
		},
		{
			name:    "keep_min floor with keep_full",
			catalog: catalog,
			policy:  retention.Policy{KeepFull: 1, KeepMin: 6},
			now:     end,
			// The newest 6: day last (4) and day last-1's 12:00 and 18:00,
			// which need day last-1's full.
			keep: []string{
				id(at(last-1, 0)), id(at(last-1, 12)), id(at(last-1, 18)),
				id(at(last, 0)), id(at(last, 6)), id(at(last, 12)), id(at(last, 18)),
			},
			reasons: map[string]string{
				id(at(last, 18)):   "keep_min 6; chain of full " + id(at(last, 0)) + " (newest full)",
				id(at(last, 0)):    "keep_min 6; newest full",
				id(at(last-1, 0)):  "needed by differential " + id(at(last-1, 12)),
				id(at(last-1, 12)): "keep_min 6",
				id(at(last-1, 6)):  "not among the newest 6 backups",
			},
		},
		{
			name:    "keep_min larger than the catalog",
			catalog: catalog,
			policy:  retention.Policy{KeepDays: 1, KeepMin: 1000},
			now:     end.Add(30 * 24 * time.Hour),
			keep:    dayIDs(0, last),
		},
		{
			name:    "combined rules: union",
			catalog: catalog,
			policy:  retention.Policy{KeepFull: 1, KeepDays: 3, KeepMin: 2},
			now:     at(last, 19),
			keep:    dayIDs(last-2, last),
			reasons: map[string]string{
				id(at(last, 18)):   "keep_min 2; within 3 days; chain of full " + id(at(last, 0)),
				id(at(last, 0)):    "within 3 days; newest full",
				id(at(last-2, 0)):  "within 3 days",
				id(at(last-3, 18)): "expired: older than 3 days, not in the chain of the newest full, not among the newest 2 backups",
			},
		},
		{
			name:    "orphans are deleted when no rule retains them",
			catalog: orphanCatalog(),
			policy:  retention.Policy{KeepFull: 1},
			now:     at(4, 0),
			keep:    dayIDs(2, 2),
			reasons: map[string]string{
				id(at(3, 6)):  "orphan: parent " + id(at(3, 0)) + " is missing",
				id(at(3, 18)): "chain broken at orphan " + id(at(3, 6)),
				id(at(1, 3)):  "orphan: incremental backup without parent_id",
			},
			check: func(t *testing.T, p *retention.Plan) {
				assert.Contains(t, ids(p.Delete), id(at(3, 6)))
				assert.Contains(t, reasonOf(t, p, id(at(3, 6))), "expired")
			},
		},
		{
			name:    "orphans are kept when a rule retains them",
			catalog: orphanCatalog(),
			policy:  retention.Policy{KeepDays: 1},
			now:     at(4, 0),
			// The orphans cannot be restored: the newest restorable chain
			// (day 2's 18:00 incremental) is kept too.
			keep: []string{id(at(2, 0)), id(at(2, 12)), id(at(2, 18)), id(at(3, 6)), id(at(3, 18))},
			reasons: map[string]string{
				id(at(2, 18)): "newest restorable chain",
				id(at(3, 6)):  "within 1 days; orphan: parent " + id(at(3, 0)) + " is missing, cannot be restored",
				id(at(3, 18)): "within 1 days; chain broken at orphan " + id(at(3, 6)),
			},
		},
		{
			name:    "orphans kept by keep_min",
			catalog: orphanCatalog(),
			policy:  retention.Policy{KeepFull: 1, KeepMin: 1},
			now:     at(4, 0),
			keep:    append(dayIDs(2, 2), id(at(3, 6)), id(at(3, 18))),
			reasons: map[string]string{
				id(at(3, 6)): "needed by incremental " + id(at(3, 18)) + "; orphan",
			},
		},
		{
			name: "a full's parent_id is ignored",
			catalog: func() []*manifest.Manifest {
				c := nightly(2)
				c[4].ParentID = c[3].BackupID // day 1's full names day 0's incremental
				return c
			}(),
			policy: retention.Policy{KeepFull: 1},
			now:    lastEnd(2),
			keep:   dayIDs(1, 1),
		},
		{
			name: "ties on start time are broken by backup ID",
			catalog: []*manifest.Manifest{
				mk(manifest.TypeFull, at(0, 0), nil, 0, 1),
				func() *manifest.Manifest {
					m := mk(manifest.TypeFull, at(0, 0), nil, 0, 1)
					m.BackupID = "b-same-start"
					return m
				}(),
			},
			policy: retention.Policy{KeepFull: 1},
			now:    at(0, 1),
			keep:   []string{"b-same-start"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := retention.Compute(tc.catalog, tc.policy, tc.now)
			require.NoError(t, err)
			require.NotNil(t, p.Keep)
			require.NotNil(t, p.Delete)
			checkInvariants(t, tc.catalog, p)
			assert.Equal(t, tc.keep, ids(p.Keep))
			for bid, want := range tc.reasons {
				assert.Contains(t, reasonOf(t, p, bid), want, "reason of %s", bid)
			}
			if tc.check != nil {
				tc.check(t, p)
			}

			// Deterministic, whatever the input order.
			shuffled := slices.Clone(tc.catalog)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
				shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
			})
			p2, err := retention.Compute(shuffled, tc.policy, tc.now)
			require.NoError(t, err)
			assert.Equal(t, p, p2)
		})
	}
}

func TestComputeDeletionOrder(t *testing.T) {
	catalog := nightly(3)
	p, err := retention.Compute(catalog, retention.Policy{KeepFull: 1}, lastEnd(3))
	require.NoError(t, err)
	// Chain by chain, oldest first, leaves first.
	assert.Equal(t, []string{
		id(at(0, 6)), id(at(0, 18)), id(at(0, 12)), id(at(0, 0)),
		id(at(1, 6)), id(at(1, 18)), id(at(1, 12)), id(at(1, 0)),
	}, ids(p.Delete))

	// A long incremental chain is deleted from its tip, even though an
	// independent full is older than the tip.
	f1 := mk(manifest.TypeFull, at(0, 0), nil, 0, 10)
	i1 := mk(manifest.TypeIncremental, at(0, 1), f1, 10, 20)
	f2 := mk(manifest.TypeFull, at(0, 2), nil, 0, 30)
	i2 := mk(manifest.TypeIncremental, at(0, 3), i1, 20, 40)
	f3 := mk(manifest.TypeFull, at(0, 4), nil, 0, 50)
	p, err = retention.Compute([]*manifest.Manifest{f1, i1, f2, i2, f3}, retention.Policy{KeepFull: 1}, at(1, 0))
	require.NoError(t, err)
	assert.Equal(t, []string{f2.BackupID, i2.BackupID, i1.BackupID, f1.BackupID}, ids(p.Delete))
	checkInvariants(t, []*manifest.Manifest{f1, i1, f2, i2, f3}, p)
}

// TestComputeRandomCatalogs checks the invariants on random forests of
// backups and random policies.
func TestComputeRandomCatalogs(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 7))
	for iter := range 200 {
		n := rng.IntN(40)
		var catalog []*manifest.Manifest
		for i := range n {
			start := at(0, 0).Add(time.Duration(rng.IntN(500)) * time.Hour)
			var m *manifest.Manifest
			switch {
			case i == 0 || rng.IntN(4) == 0:
				m = mk(manifest.TypeFull, start, nil, 0, 1)
			case rng.IntN(10) == 0:
				m = mk(manifest.TypeIncremental, start, nil, 1, 2)
				m.ParentID = "missing"
			default:
				parent := catalog[rng.IntN(len(catalog))]
				typ := manifest.TypeIncremental
				if rng.IntN(3) == 0 {
					typ = manifest.TypeDifferential
				}
				m = mk(typ, start, parent, 1, 2)
			}
			m.BackupID = fmt.Sprintf("b%03d", i)
			catalog = append(catalog, m)
		}
		policy := retention.Policy{KeepFull: rng.IntN(4), KeepDays: rng.IntN(10), KeepMin: rng.IntN(5)}
		now := at(0, 0).Add(time.Duration(rng.IntN(600)) * time.Hour)
		p, err := retention.Compute(catalog, policy, now)
		require.NoError(t, err, "iteration %d", iter)
		checkInvariants(t, catalog, p)
		if t.Failed() {
			t.Fatalf("iteration %d: policy %v", iter, policy)
		}
	}
}

func TestComputeErrors(t *testing.T) {
	good := nightly(1)
	now := lastEnd(1)
	tests := []struct {
		name    string
		catalog []*manifest.Manifest
		policy  retention.Policy
		want    string
	}{
		{"negative keep_full", good, retention.Policy{KeepFull: -1}, "keep_full is -1"},
		{"nil manifest", []*manifest.Manifest{good[0], nil}, retention.Policy{}, "catalog entry 1 is nil"},
		{"empty ID", []*manifest.Manifest{{Type: manifest.TypeFull}}, retention.Policy{}, "no backup ID"},
		{"duplicate ID", []*manifest.Manifest{good[0], good[1], good[0]}, retention.Policy{}, "listed twice"},
		{"unknown type", []*manifest.Manifest{{BackupID: "x", Type: "snapshot"}}, retention.Policy{}, `unknown type "snapshot"`},
		{"loop", []*manifest.Manifest{
			{BackupID: "a", Type: manifest.TypeIncremental, ParentID: "b"},
			{BackupID: "b", Type: manifest.TypeIncremental, ParentID: "a"},
			good[0],
		}, retention.Policy{KeepFull: 1}, "own ancestor"},
		{"self parent", []*manifest.Manifest{
			{BackupID: "a", Type: manifest.TypeDifferential, ParentID: "a"},
		}, retention.Policy{}, "backup a is its own ancestor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := retention.Compute(tc.catalog, tc.policy, now)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		policy retention.Policy
		want   string // empty: valid
	}{
		{retention.Policy{}, ""},
		{retention.Policy{KeepFull: 2, KeepDays: 7, KeepMin: 3}, ""},
		{retention.Policy{KeepMin: 5}, ""},
		{retention.Policy{KeepFull: -1}, "keep_full is -1 (must be >= 0)"},
		{retention.Policy{KeepDays: -7}, "keep_days is -7"},
		{retention.Policy{KeepMin: -3}, "keep_min is -3"},
		{retention.Policy{KeepDays: retention.MaxKeepDays}, ""},
		{retention.Policy{KeepDays: retention.MaxKeepDays + 1}, "keep_days is 36501 (must be <= 36500"},
		{retention.Policy{KeepDays: 106752}, "keep_days is 106752"},
		{retention.Policy{KeepFull: -1, KeepDays: -2, KeepMin: -3}, "keep_full is -1 (must be >= 0); keep_days is -2 (must be >= 0); keep_min is -3"},
	}
	for _, tc := range tests {
		t.Run(tc.policy.String(), func(t *testing.T) {
			err := tc.policy.Validate()
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, "invalid retention policy")
		})
	}
	assert.Equal(t, "keep_full=2 keep_days=7 keep_min=3", retention.Policy{KeepFull: 2, KeepDays: 7, KeepMin: 3}.String())
}

// keep_days used to be multiplied into a time.Duration: 106752 days and more
// overflowed, the cut-off landed in the future and every backup was deleted.
func TestComputeKeepDaysDoesNotOverflow(t *testing.T) {
	catalog := nightly(3)
	now := lastEnd(3)
	for _, days := range []int{106752, 1 << 40, math.MaxInt} {
		p, err := retention.Compute(catalog, retention.Policy{KeepDays: days}, now)
		require.Error(t, err, "keep_days %d", days)
		assert.Nil(t, p)
		assert.ErrorContains(t, err, "must be <= 36500")
	}
	// The largest value keeps a backup of almost 100 years ago, counted in
	// calendar days.
	old := mk(manifest.TypeFull, now.AddDate(-99, 0, 0), nil, 0, 1)
	p, err := retention.Compute(append([]*manifest.Manifest{old}, catalog...), retention.Policy{KeepDays: retention.MaxKeepDays}, now)
	require.NoError(t, err)
	assert.Empty(t, p.Delete)
	assert.Contains(t, reasonOf(t, p, old.BackupID), "within 36500 days")
	// Calendar days: the cut-off is the same wall time KeepDays days
	// earlier, across leap days.
	leap := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	b := mk(manifest.TypeFull, time.Date(2024, 2, 28, 12, 0, 0, 0, time.UTC), nil, 0, 1)
	b.EndTime = b.StartTime.Add(time.Second)
	newer := mk(manifest.TypeFull, leap, nil, 0, 2)
	p, err = retention.Compute([]*manifest.Manifest{b, newer}, retention.Policy{KeepDays: 2}, leap)
	require.NoError(t, err)
	assert.Equal(t, []string{b.BackupID, newer.BackupID}, ids(p.Keep), "Feb 28 12:00:01 is within 2 calendar days of Mar 1 12:00 in a leap year")
}

// When backups stop, a keep_days policy used to expire them all: the newest
// restorable chain is now always kept unless deleting it is allowed.
func TestComputeKeepsNewestRestorableChain(t *testing.T) {
	catalog := nightly(3) // newest: day 2's 18:00 incremental on the noon differential
	now := lastEnd(3).AddDate(0, 0, 8)
	chain := []string{id(at(2, 0)), id(at(2, 12)), id(at(2, 18))}

	for _, pol := range []retention.Policy{{KeepDays: 7}, {KeepFull: 1, KeepDays: 7}, {KeepDays: 1, KeepMin: 1}} {
		p, err := retention.Compute(catalog, pol, now)
		require.NoError(t, err)
		checkInvariants(t, catalog, p)
		assert.Equal(t, id(at(2, 18)), p.Newest, pol.String())
		assert.False(t, p.NewestDeleted)
		assert.Subset(t, ids(p.Keep), chain, pol.String())
		for _, a := range p.Delete {
			assert.NotContains(t, chain, a.BackupID)
		}
	}
	p, err := retention.Compute(catalog, retention.Policy{KeepDays: 7}, now)
	require.NoError(t, err)
	assert.Equal(t, chain, ids(p.Keep))
	assert.Contains(t, reasonOf(t, p, id(at(2, 18))), "newest restorable chain: always kept")
	assert.Contains(t, reasonOf(t, p, id(at(2, 12))), "needed by incremental "+id(at(2, 18)))
	assert.Contains(t, reasonOf(t, p, id(at(2, 6))), "expired: older than 7 days")

	// The explicit flag lets the policy delete it, and the plan says so.
	p, err = retention.Compute(catalog, retention.Policy{KeepDays: 7, AllowDeleteNewest: true}, now)
	require.NoError(t, err)
	checkInvariants(t, catalog, p)
	assert.Empty(t, p.Keep)
	assert.True(t, p.NewestDeleted)
	for _, bid := range chain {
		assert.Contains(t, reasonOf(t, p, bid), "NEWEST RESTORABLE CHAIN")
	}
	assert.NotContains(t, reasonOf(t, p, id(at(2, 6))), "NEWEST RESTORABLE CHAIN")
	assert.Contains(t, retention.Policy{KeepDays: 7, AllowDeleteNewest: true}.String(), "allow_delete_newest")

	// Newer backups that cannot be restored (orphans) do not count: the
	// newest restorable chain is older.
	ghost := mk(manifest.TypeFull, at(3, 0), nil, 0, 99000)
	orphan := mk(manifest.TypeIncremental, at(3, 6), ghost, ghost.ToLSN, 99100)
	withOrphan := append(slices.Clone(catalog), orphan)
	p, err = retention.Compute(withOrphan, retention.Policy{KeepDays: 7}, now)
	require.NoError(t, err)
	assert.Equal(t, id(at(2, 18)), p.Newest)
	assert.Equal(t, chain, ids(p.Keep))
	assert.Contains(t, ids(p.Delete), orphan.BackupID, "the expired orphan goes")

	// A catalog without any restorable backup has no newest chain.
	p, err = retention.Compute([]*manifest.Manifest{orphan}, retention.Policy{KeepDays: 7}, now)
	require.NoError(t, err)
	assert.Empty(t, p.Newest)
	assert.Empty(t, p.Keep)
}
