// Package retention decides which backups of an instance to keep and which
// to delete (Compute, a pure function of the catalog, the policy and the
// current time), deletes them in a crash-safe order (Execute), and removes
// the leftovers of interrupted uploads and deletions (GCPartial).
//
// Backups form chains: a full has no parent; an incremental's parent is the
// previous backup (of any type); a differential's parent is a full. Restoring
// a backup needs every backup on its chain, so a backup is never deleted
// while a kept backup depends on it, and dependants are always deleted before
// the backups they depend on.
package retention

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/manifest"
)

// Policy is a retention policy. Its three rules are combined: a backup is
// retained if any rule retains it, and then every backup that a retained
// backup depends on is retained too.
type Policy struct {
	// KeepFull keeps the newest KeepFull full backups and every backup
	// whose chain leads to one of them (0: no limit by count).
	KeepFull int
	// KeepDays keeps every backup whose EndTime is within KeepDays
	// calendar days of now (0: no limit by age; at most MaxKeepDays).
	KeepDays int
	// KeepMin keeps at least the newest KeepMin backups of any type, whatever
	// the other rules say: a safety floor.
	KeepMin int
	// AllowDeleteNewest lets the rules delete the newest restorable chain,
	// which is otherwise always kept (see Compute). It is never part of a
	// configured policy: an operator sets it for one prune.
	AllowDeleteNewest bool
}

// MaxKeepDays bounds Policy.KeepDays: 100 years.
const MaxKeepDays = 36500

// Validate checks the policy: negative values are errors. A policy whose
// three values are zero keeps everything and is valid.
func (p Policy) Validate() error {
	var problems []string
	for _, f := range []struct {
		name string
		v    int
	}{{"keep_full", p.KeepFull}, {"keep_days", p.KeepDays}, {"keep_min", p.KeepMin}} {
		if f.v < 0 {
			problems = append(problems, fmt.Sprintf("%s is %d (must be >= 0)", f.name, f.v))
		}
	}
	if p.KeepDays > MaxKeepDays {
		problems = append(problems, fmt.Sprintf("keep_days is %d (must be <= %d, 100 years)", p.KeepDays, MaxKeepDays))
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid retention policy: %s", strings.Join(problems, "; "))
	}
	return nil
}

// keepsEverything reports whether the policy sets no limit at all.
func (p Policy) keepsEverything() bool { return p.KeepFull == 0 && p.KeepDays == 0 }

// String describes the policy, e.g. "keep_full=2 keep_days=7 keep_min=3"
// (with " allow_delete_newest" when set).
func (p Policy) String() string {
	s := fmt.Sprintf("keep_full=%d keep_days=%d keep_min=%d", p.KeepFull, p.KeepDays, p.KeepMin)
	if p.AllowDeleteNewest {
		s += " allow_delete_newest"
	}
	return s
}

// cutoff returns the start of the KeepDays window at now: KeepDays
// calendar days before now (time.AddDate, which cannot overflow for a
// valid policy).
func (p Policy) cutoff(now time.Time) time.Time { return now.AddDate(0, 0, -p.KeepDays) }

// Action is the decision about one backup.
type Action struct {
	BackupID string
	Type     string // manifest.TypeFull, TypeIncremental or TypeDifferential
	Reason   string // why it is kept or deleted, for humans
}

// Plan is the outcome of a retention policy applied to a catalog.
type Plan struct {
	// Keep lists the retained backups, oldest first, each with the reasons
	// it is kept (e.g. "newest 2 fulls", "within 7 days", "keep_min 3",
	// "needed by incremental X").
	Keep []Action
	// Delete lists the backups to delete, in the order they must be
	// deleted: every backup comes after all the backups that depend on it
	// (children first), and among backups free to go, the oldest comes
	// first. Deleting in this order, a crash at any point leaves no listed
	// backup whose parent is gone.
	Delete []Action
	// Newest is the newest restorable backup: the newest whose chain leads
	// to a full (empty when there is none). Its chain is always kept unless
	// the policy allows deleting it.
	Newest string `json:"newest,omitempty"`
	// NewestDeleted is set when the plan deletes the newest restorable
	// chain (only with Policy.AllowDeleteNewest): after it, no backup of
	// the instance can be restored.
	NewestDeleted bool `json:"newest_deleted,omitempty"`
}

// node is one backup in the dependency graph.
type node struct {
	m        *manifest.Manifest
	order    int   // chronological rank
	parent   *node // nil for a full or an orphan
	children []*node
	root     *node  // the full at the start of the chain; nil if the chain is broken
	broken   string // why the chain is broken (orphan), empty if it is not
	keep     bool
	reasons  []string
}

func (n *node) id() string  { return n.m.BackupID }
func (n *node) typ() string { return n.m.Type }

// chronological orders backups by start time, then backup ID.
func chronological(a, b *manifest.Manifest) int {
	if c := a.StartTime.Compare(b.StartTime); c != 0 {
		return c
	}
	return cmp.Compare(a.BackupID, b.BackupID)
}

// Compute applies policy p at time now to a catalog of one instance's
// backups (in any order) and returns which to keep and which to delete. It
// does no I/O.
//
// "Newest" means latest StartTime (ties broken by BackupID). A backup is
// retained if it is among the newest p.KeepMin backups, or its EndTime is
// after now minus KeepDays calendar days (when KeepDays > 0), or the full at the start of its
// chain is among the newest p.KeepFull fulls (when KeepFull > 0); when both
// KeepFull and KeepDays are 0, everything is retained. Every ancestor of a
// retained backup is retained as well ("needed by ..."). Everything else is
// deleted, with one exception: the newest restorable backup (the newest
// whose chain leads to a full; its full is then the newest full) and its
// chain are always retained ("newest restorable chain"), so that a policy
// can never leave an instance with nothing to restore, for example when
// backups stopped longer than KeepDays ago. Only p.AllowDeleteNewest lets
// the rules delete it, and the plan then says so (Plan.NewestDeleted and the
// reasons).
//
// A backup whose parent is not in the catalog (an orphan), and every backup
// depending on it, cannot be restored; such backups are kept or deleted by
// the same rules as the others (an orphan's chain has no full, so KeepFull
// never retains it) and the reason says that the chain is broken.
//
// A full backup's ParentID, if any, is ignored: a full depends on nothing.
// Compute fails on an invalid policy, a nil manifest, an empty or duplicate
// backup ID, an unknown backup type, or a loop of parents.
func Compute(backups []*manifest.Manifest, p Policy, now time.Time) (*Plan, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	nodes, err := buildGraph(backups)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}

	// Rules.
	n := len(nodes)
	if p.keepsEverything() {
		for _, nd := range nodes {
			nd.keep = true
			nd.reasons = append(nd.reasons, "no retention limit")
		}
	} else {
		// nodes is in chronological order: newest last.
		for i := n - 1; i >= 0 && i >= n-p.KeepMin; i-- {
			nodes[i].keep = true
			nodes[i].reasons = append(nodes[i].reasons, fmt.Sprintf("keep_min %d", p.KeepMin))
		}
		if p.KeepDays > 0 {
			cutoff := p.cutoff(now)
			for _, nd := range nodes {
				if nd.m.EndTime.After(cutoff) {
					nd.keep = true
					nd.reasons = append(nd.reasons, fmt.Sprintf("within %d days", p.KeepDays))
				}
			}
		}
		if p.KeepFull > 0 {
			keptFulls := make(map[*node]bool)
			for i := n - 1; i >= 0 && len(keptFulls) < p.KeepFull; i-- {
				if nodes[i].typ() == manifest.TypeFull {
					keptFulls[nodes[i]] = true
				}
			}
			label := fmt.Sprintf("newest %d fulls", p.KeepFull)
			if p.KeepFull == 1 {
				label = "newest full"
			}
			for _, nd := range nodes {
				switch {
				case keptFulls[nd]:
					nd.keep = true
					nd.reasons = append(nd.reasons, label)
				case nd.root != nil && keptFulls[nd.root]:
					nd.keep = true
					nd.reasons = append(nd.reasons, fmt.Sprintf("chain of full %s (%s)", nd.root.id(), label))
				}
			}
		}
	}

	// The newest restorable chain.
	var newest *node
	for i := n - 1; i >= 0; i-- {
		if nodes[i].root != nil {
			newest = nodes[i]
			break
		}
	}
	if newest != nil && !newest.keep && !p.AllowDeleteNewest {
		newest.keep = true
		newest.reasons = append(newest.reasons, "newest restorable chain: always kept (the policy alone would delete it; prune --allow-delete-newest deletes it)")
	}

	// Close over dependencies: the ancestors of a retained backup are
	// retained. Oldest first, so that each ancestor names the oldest
	// retained backup that needs it.
	ruleKept := make([]bool, n)
	for i, nd := range nodes {
		ruleKept[i] = nd.keep
	}
	for i, nd := range nodes {
		if !ruleKept[i] {
			continue
		}
		for a := nd.parent; a != nil; a = a.parent {
			if !a.keep {
				a.keep = true
				a.reasons = append(a.reasons, fmt.Sprintf("needed by %s %s", nd.typ(), nd.id()))
			}
		}
	}

	plan := &Plan{Keep: []Action{}, Delete: []Action{}}
	if newest != nil {
		plan.Newest = newest.id()
		plan.NewestDeleted = !newest.keep
	}
	for _, nd := range nodes {
		if nd.keep {
			plan.Keep = append(plan.Keep, action(nd, strings.Join(nd.reasons, "; ")))
		}
	}
	order, err := deletionOrder(nodes)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	deleteReason := expiredReason(p)
	for _, nd := range order {
		reason := deleteReason
		if plan.NewestDeleted && (nd == newest || isAncestor(nd, newest)) {
			reason += "; NEWEST RESTORABLE CHAIN, deleted because deleting it is allowed"
		}
		plan.Delete = append(plan.Delete, action(nd, reason))
	}
	return plan, nil
}

// isAncestor says whether a is a strict ancestor of x.
func isAncestor(a, x *node) bool {
	for y := x.parent; y != nil; y = y.parent {
		if y == a {
			return true
		}
	}
	return false
}

// action builds the Action of a node, adding the broken-chain note.
func action(nd *node, reason string) Action {
	if nd.broken != "" {
		reason += "; " + nd.broken
	}
	return Action{BackupID: nd.id(), Type: nd.typ(), Reason: reason}
}

// expiredReason says why a policy does not retain a backup.
func expiredReason(p Policy) string {
	var parts []string
	if p.KeepDays > 0 {
		parts = append(parts, fmt.Sprintf("older than %d days", p.KeepDays))
	}
	if p.KeepFull > 0 {
		if p.KeepFull == 1 {
			parts = append(parts, "not in the chain of the newest full")
		} else {
			parts = append(parts, fmt.Sprintf("not in the chain of the newest %d fulls", p.KeepFull))
		}
	}
	if p.KeepMin > 0 {
		parts = append(parts, fmt.Sprintf("not among the newest %d backups", p.KeepMin))
	}
	parts = append(parts, "not needed by a retained backup")
	return "expired: " + strings.Join(parts, ", ")
}

// buildGraph checks the catalog, sorts it chronologically and links every
// backup to its parent and chain root.
func buildGraph(backups []*manifest.Manifest) ([]*node, error) {
	nodes := make([]*node, 0, len(backups))
	byID := make(map[string]*node, len(backups))
	for i, m := range backups {
		if m == nil {
			return nil, fmt.Errorf("catalog entry %d is nil", i)
		}
		if m.BackupID == "" {
			return nil, fmt.Errorf("catalog entry %d has no backup ID", i)
		}
		switch m.Type {
		case manifest.TypeFull, manifest.TypeIncremental, manifest.TypeDifferential, manifest.TypeLogical:
		default:
			return nil, fmt.Errorf("backup %s has unknown type %q", m.BackupID, m.Type)
		}
		if _, dup := byID[m.BackupID]; dup {
			return nil, fmt.Errorf("backup %s is listed twice", m.BackupID)
		}
		nd := &node{m: m}
		byID[m.BackupID] = nd
		nodes = append(nodes, nd)
	}
	slices.SortFunc(nodes, func(a, b *node) int { return chronological(a.m, b.m) })
	for i, nd := range nodes {
		nd.order = i
		if manifest.IsRoot(nd.typ()) {
			continue
		}
		switch parent, ok := byID[nd.m.ParentID]; {
		case nd.m.ParentID == "":
			nd.broken = fmt.Sprintf("orphan: %s backup without parent_id, cannot be restored", nd.typ())
		case !ok:
			nd.broken = fmt.Sprintf("orphan: parent %s is missing, cannot be restored", nd.m.ParentID)
		default:
			nd.parent = parent
			parent.children = append(parent.children, nd)
		}
	}
	// Resolve each chain's root, detecting loops.
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[*node]int, len(nodes))
	for _, nd := range nodes {
		var path []*node
		cur := nd
		for cur != nil && state[cur] == unvisited {
			state[cur] = visiting
			path = append(path, cur)
			cur = cur.parent
		}
		if cur != nil && state[cur] == visiting {
			return nil, fmt.Errorf("backup %s is its own ancestor (loop of parent_id)", cur.id())
		}
		// cur is nil (the last of path is a full or an orphan) or done.
		for i := len(path) - 1; i >= 0; i-- {
			x := path[i]
			if x.parent == nil {
				if manifest.IsRoot(x.typ()) {
					x.root = x
				}
			} else {
				x.root = x.parent.root
				if x.root == nil {
					orphan := x.parent
					for orphan.parent != nil {
						orphan = orphan.parent
					}
					x.broken = fmt.Sprintf("chain broken at orphan %s, cannot be restored", orphan.id())
				}
			}
			state[x] = done
		}
	}
	return nodes, nil
}

// deletionOrder returns the backups not kept, each after all of its
// dependants, oldest first among those whose dependants are all gone.
func deletionOrder(nodes []*node) ([]*node, error) {
	pending := make(map[*node]int) // dependants not yet deleted
	ready := &nodeHeap{}
	for _, nd := range nodes {
		if nd.keep {
			continue
		}
		for _, c := range nd.children {
			if c.keep {
				// Cannot happen: the ancestors of a kept backup are kept.
				return nil, fmt.Errorf("internal error: kept backup %s depends on deleted backup %s", c.id(), nd.id())
			}
		}
		pending[nd] = len(nd.children)
		if len(nd.children) == 0 {
			heap.Push(ready, nd)
		}
	}
	out := make([]*node, 0, len(pending))
	for ready.Len() > 0 {
		nd := heap.Pop(ready).(*node)
		out = append(out, nd)
		if p := nd.parent; p != nil && !p.keep {
			pending[p]--
			if pending[p] == 0 {
				heap.Push(ready, p)
			}
		}
	}
	if len(out) != len(pending) {
		return nil, errors.New("internal error: deletion order is incomplete")
	}
	return out, nil
}

// nodeHeap is a min-heap of nodes by chronological order.
type nodeHeap []*node

func (h nodeHeap) Len() int           { return len(h) }
func (h nodeHeap) Less(i, j int) bool { return h[i].order < h[j].order }
func (h nodeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nodeHeap) Push(x any)        { *h = append(*h, x.(*node)) }
func (h *nodeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
