package metrics

import (
	"sync"
	"time"
)

// archiveCounts keeps the last cumulative archive counts per instance and
// run.
type archiveCounts struct {
	mu   sync.Mutex
	last map[string]archiveRun
}

type archiveRun struct {
	run    string
	counts [4]int
}

func newArchiveCounts() *archiveCounts { return &archiveCounts{last: map[string]archiveRun{}} }

// delta returns how much each count grew since the last status of the same
// run (all of it for a new run), never negative.
func (a *archiveCounts) delta(instance, run string, counts [4]int) [4]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev, ok := a.last[instance]
	var d [4]int
	for i := range counts {
		base := 0
		if ok && prev.run == run {
			base = prev.counts[i]
		}
		if counts[i] > base {
			d[i] = counts[i] - base
		}
		if ok && prev.run == run && counts[i] < prev.counts[i] {
			// Never count backwards; keep the high-water mark.
			counts[i] = prev.counts[i]
		}
	}
	a.last[instance] = archiveRun{run: run, counts: counts}
	return d
}

// drillState keeps, per instance, the newest drill shown and the drills
// counted.
type drillState struct {
	mu      sync.Mutex
	newest  map[string]time.Time
	counted map[string]bool
}

var drillSeen = &drillState{newest: map[string]time.Time{}, counted: map[string]bool{}}

// see records a drill (as counted when count) and reports whether its id
// was not counted before and
// whether it is the newest of its instance so far.
func (d *drillState) see(instance, id string, finished time.Time, count bool) (fresh, newest bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := instance + "\x00" + id
	fresh = !d.counted[key]
	if count {
		d.counted[key] = true
	}
	if t, ok := d.newest[instance]; ok && finished.Before(t) {
		return fresh, false
	}
	d.newest[instance] = finished
	return fresh, true
}

// forget drops the newest drill shown of an instance.
func (d *drillState) forget(instance string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.newest, instance)
}
