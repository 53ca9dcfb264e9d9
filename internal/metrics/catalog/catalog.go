// Package catalog computes the worker's catalog-derived metrics from the
// repository and the live config: the newest complete backup of each
// instance and type, the point-in-time window and the archive's gaps in it,
// the newest drill report, and the policy's schedule intervals. Everything
// comes from the repository, so the gauges survive a restart of the worker.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
)

// FutureSlack is how far in the future a backup's or drill's end time may
// lie (clock skew between hosts) before the refresher takes it for a
// hostile or broken record and ignores it: such a time would hide an
// overdue backup from the alerts for as long as it lies ahead.
const FutureSlack = 10 * time.Minute

// backupTypes are the types strata_backup_last_* is exported for.
var backupTypes = []string{manifest.TypeFull, manifest.TypeIncremental, manifest.TypeDifferential, manifest.TypeLogical}

// drillPhases are the phases strata_drill_phase_seconds is exported for.
var drillPhases = map[string]bool{drill.PhaseRestore: true, drill.PhaseReplay: true, drill.PhaseStart: true,
	drill.PhaseVerify: true, drill.PhaseTeardown: true}

// DefaultBackstop is how often a Refresher re-reads an instance's catalog
// in full (Refresher.Backstop).
const DefaultBackstop = time.Hour

// Refresher sets the catalog-derived gauges. A refresh of an unchanged
// instance costs three listing requests: the backup ids (one level, with
// storage.ListDir), the drill reports, and the archive's open index tail.
// Manifests, drill reports and the archive's index objects are immutable
// once written: each is read once and remembered by key. What the cheap
// refresh cannot see (a manifest deleted while its backup's data stays, an
// archive pruned elsewhere) is caught by a full refresh of the instance
// every Backstop, or at the next refresh after MarkChanged.
// It is safe for concurrent use; refreshes run one at a time.
type Refresher struct {
	Repo *repo.Repo
	// Config returns the live config (the policy watcher's current one).
	Config func() *config.Config
	Log    *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Backstop is how often each instance gets a full refresh: a listing
	// of every object of its backups and a re-read of its archive's index
	// (DefaultBackstop when zero).
	Backstop time.Duration

	mu        sync.Mutex
	state     map[string]*instanceState // by instance
	drills    map[string]*drill.Report  // by key; nil: unreadable or not the instance's
	instances map[string]bool           // shown at the last refresh
	// primed holds the instances whose drill reports were all read once:
	// a report that appears later is a drill that finished since.
	primed map[string]bool
	// changed holds the instances MarkChanged named ("": every one), with
	// whether data was deleted.
	changed map[string]bool
}

// instanceState is what the refresher remembers of an instance.
type instanceState struct {
	backups  map[string]*backupState // by backup id
	lastFull time.Time               // of the last full refresh that succeeded
	archive  *binlog.Store           // reads the archive, with its cache
	// indexKeys are the archive's individual records at the last read of
	// its index (ix): the same listing again means the same archive.
	indexKeys []string
	ix        *binlog.Index
	// base are the segments before cut, the first segment of the newest
	// roll-up at the last full read of the index, condensed: the older
	// roll-ups are immutable, so a read of the tail completes them.
	base     []binlog.Segment
	cut      uint64
	haveBase bool
}

// backupState is a backup id seen in the repository.
type backupState struct {
	complete bool               // its manifest was read
	m        *manifest.Manifest // the manifest; nil: partial, or not to be shown
	// firstSeen and checked: when the refresher first saw the id and last
	// looked for its manifest (while partial).
	firstSeen, checked time.Time
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Refresher) log() *zap.Logger {
	if r.Log != nil {
		return r.Log
	}
	return zap.NewNop()
}

func (r *Refresher) backstop() time.Duration {
	if r.Backstop > 0 {
		return r.Backstop
	}
	return DefaultBackstop
}

// MarkChanged makes the next refresh of the instance ("": of every
// instance) look again for the manifests of its partial backups and re-read
// its archive's index; with deleted (a retention or a removal completed),
// it is a full refresh of the instance. Workers call it when a workflow
// that changes the catalog completes on them.
func (r *Refresher) MarkChanged(instance string, deleted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = map[string]bool{}
	}
	r.changed[instance] = r.changed[instance] || deleted
}

// Refresh recomputes every gauge from the repository and the config. A
// part that cannot be read (the repository down) keeps its previous values
// and is returned as an error after the other parts were refreshed.
func (r *Refresher) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		r.state, r.drills, r.instances = map[string]*instanceState{}, map[string]*drill.Report{}, map[string]bool{}
		r.primed = map[string]bool{}
	}
	cfg := r.Config()
	now := r.now()
	var errs []error
	seen := map[string]bool{}
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		seen[in.ID] = true
		setSchedules(in, now)
		st := r.state[in.ID]
		if st == nil {
			st = &instanceState{backups: map[string]*backupState{}}
			r.state[in.ID] = st
		}
		deleted, marked := r.changed[in.ID]
		deleted = deleted || r.changed[""]
		_, all := r.changed[""]
		marked = marked || all
		full := deleted || st.lastFull.IsZero() || now.Sub(st.lastFull) >= r.backstop()
		ok := true
		backups, err := r.backups(ctx, in.ID, st, now, full, marked)
		if err != nil {
			errs, ok = append(errs, err), false
		} else {
			setLastBackups(in.ID, backups)
			if err := r.pitr(ctx, in.ID, st, backups, full || marked); err != nil {
				errs, ok = append(errs, err), false
			}
		}
		if err := r.lastDrill(ctx, in.ID, now); err != nil {
			errs, ok = append(errs, err), false
		}
		if ok {
			if full {
				st.lastFull = now
			}
			delete(r.changed, in.ID)
		}
	}
	if len(errs) == 0 {
		delete(r.changed, "")
	}
	for id := range r.instances {
		if !seen[id] {
			metrics.ForgetInstance(id)
			delete(r.primed, id)
		}
	}
	for id := range r.state {
		if !seen[id] {
			delete(r.state, id)
		}
	}
	r.instances = seen
	return errors.Join(errs...)
}

// validID says whether id can name a backup (ReadManifest refuses others).
func validID(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/\\\x00")
}

// partialDue says whether a partial backup's manifest is looked for again:
// when the time since the last look exceeds a quarter of the time since the
// id was first seen (so a backup is seen at most a quarter of its run time
// after it completes), until that quarter reaches the backstop, which
// then looks for it.
func (r *Refresher) partialDue(b *backupState, now time.Time) bool {
	wait := b.checked.Sub(b.firstSeen) / 4
	return wait < r.backstop() && now.Sub(b.checked) > wait
}

// backups returns the instance's complete backups that are plausible,
// sorted by start time. A full refresh lists every object of the backups;
// the others list the backup ids alone and read the manifests of the ids
// not seen before and of the partial ones due (partialDue, or all when
// recheck).
func (r *Refresher) backups(ctx context.Context, instance string, st *instanceState, now time.Time, full, recheck bool) ([]*manifest.Manifest, error) {
	prefix := repo.BackupsPrefix(instance)
	b := r.Repo.Backend()
	hasManifest := map[string]bool{} // by listed id; full refresh only
	var ids []string
	if full {
		objs, err := b.List(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("metrics: list the backups of %s: %w", instance, err)
		}
		for _, o := range objs {
			id, name, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
			if !ok || !validID(id) {
				continue
			}
			if _, dup := hasManifest[id]; !dup {
				ids = append(ids, id)
			}
			hasManifest[id] = hasManifest[id] || name == manifest.FileName
		}
	} else {
		_, dirs, err := storage.ListDir(ctx, b, prefix)
		if err != nil {
			return nil, fmt.Errorf("metrics: list the backups of %s: %w", instance, err)
		}
		for _, d := range dirs {
			if id := strings.TrimSuffix(strings.TrimPrefix(d, prefix), "/"); validID(id) {
				ids = append(ids, id)
			}
		}
	}
	listed := map[string]bool{}
	var out []*manifest.Manifest
	for _, id := range ids {
		listed[id] = true
		bs := st.backups[id]
		var read bool
		switch {
		case full && !hasManifest[id]:
			if bs == nil {
				bs = &backupState{firstSeen: now}
				st.backups[id] = bs
			}
			// Partial (or its manifest deleted): looked for from now on.
			bs.complete, bs.m, bs.checked = false, nil, now
		case bs == nil:
			bs = &backupState{firstSeen: now}
			st.backups[id] = bs
			read = true
		case !bs.complete:
			read = full || recheck || r.partialDue(bs, now)
		}
		if read {
			if err := r.readManifest(ctx, instance, id, bs, now); err != nil {
				return nil, err
			}
		}
		if bs.m != nil {
			out = append(out, bs.m)
		}
	}
	for id := range st.backups {
		if !listed[id] {
			delete(st.backups, id) // pruned
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].BackupID < out[j].BackupID
	})
	return out, nil
}

// readManifest reads the manifest of backup id into bs.
func (r *Refresher) readManifest(ctx context.Context, instance, id string, bs *backupState, now time.Time) error {
	key := repo.ManifestKey(instance, id)
	m, err := r.Repo.ReadManifest(ctx, instance, id)
	bs.checked = now
	switch {
	case errors.Is(err, repo.ErrBackupNotFound):
		bs.complete, bs.m = false, nil // partial: no manifest yet
		return nil
	case errors.Is(err, manifest.ErrInvalid), errors.Is(err, manifest.ErrNewerFormat):
		r.log().Warn("metrics: ignoring a manifest that does not decode", zap.String("key", key), zap.Error(err))
		m = nil
	case err != nil:
		// Other read errors (the storage) are not remembered.
		return fmt.Errorf("metrics: read the backups of %s: %w", instance, err)
	case !plausible(m, now):
		r.log().Warn("metrics: ignoring a manifest with impossible times", zap.String("key", key),
			zap.Time("start", m.StartTime), zap.Time("end", m.EndTime))
		m = nil
	}
	bs.complete, bs.m = true, m
	return nil
}

// plausible reports whether a manifest's times can be shown: an end, not
// before its start, not in the future.
func plausible(m *manifest.Manifest, now time.Time) bool {
	return !m.EndTime.IsZero() && !m.EndTime.Before(m.StartTime) && !m.EndTime.After(now.Add(FutureSlack))
}

// setLastBackups sets the newest backup of each type.
func setLastBackups(instance string, backups []*manifest.Manifest) {
	for _, typ := range backupTypes {
		var last *manifest.Manifest
		for _, m := range backups {
			if m.Type == typ && (last == nil || m.EndTime.After(last.EndTime)) {
				last = m
			}
		}
		if last == nil {
			metrics.ClearLastBackup(instance, typ)
			continue
		}
		d := last.Duration.Std()
		if d <= 0 {
			d = last.EndTime.Sub(last.StartTime)
		}
		metrics.SetLastBackup(instance, typ, last.EndTime, d)
	}
}

// pitr sets the point-in-time window: from the start of the oldest
// recovery window to the end of the newest, with the gaps of the archive
// between them (each gap splits a window in two, so two windows are at
// least one gap).
func (r *Refresher) pitr(ctx context.Context, instance string, st *instanceState, backups []*manifest.Manifest, reread bool) error {
	ix, err := r.archive(ctx, instance, st, reread)
	if err != nil {
		return fmt.Errorf("metrics: read the binlog archive of %s: %w", instance, err)
	}
	ws := binlog.Windows(backups, ix)
	if len(ws) == 0 {
		metrics.ClearPITRWindow(instance)
		return nil
	}
	start, end := ws[0].FromTime, ws[0].ToTime
	for _, w := range ws[1:] {
		if w.FromTime.Before(start) {
			start = w.FromTime
		}
		if w.ToTime.After(end) {
			end = w.ToTime
		}
	}
	gaps := 0
	for _, g := range ix.Gaps {
		at := g.LastTime
		if at.IsZero() {
			at = g.DetectedAt
		}
		if !at.Before(start) && !at.After(end) {
			gaps++
		}
	}
	gaps = max(gaps, len(ws)-1)
	metrics.SetPITRWindow(instance, start, end, gaps)
	return nil
}

// archive returns the archive's index, condensed (binlog.Index.Condensed:
// about a segment per binlog file in memory). It lists the individual
// records (the open tail): when they are those of the last read, and not
// reread, the archive is the same (a new segment, a gap before it, a
// roll-up all change the records). Otherwise it reads the tail (ReadTail:
// the newest roll-up, the records, the gaps; fetching only the objects not
// read before, binlog.IndexCache) onto the older roll-ups' segments kept
// from the last full read, or, when the newest roll-up is another one or
// reread, the whole index. No data checks: the gaps are those the index
// records.
func (r *Refresher) archive(ctx context.Context, instance string, st *instanceState, reread bool) (*binlog.Index, error) {
	b := r.Repo.Backend()
	objs, err := b.List(ctx, binlog.IndexPrefix(instance))
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	if !reread && st.ix != nil && slices.Equal(keys, st.indexKeys) {
		return st.ix, nil
	}
	if st.archive == nil {
		st.archive = &binlog.Store{B: b, Instance: instance, IndexOnly: true, Cache: &binlog.IndexCache{}}
	}
	st.ix, st.indexKeys = nil, nil
	var ix *binlog.Index
	if !reread && st.haveBase {
		tail, err := st.archive.ReadTail(ctx)
		if err != nil {
			return nil, err
		}
		if newestRollup(tail.Rollups) == st.cut {
			merged := &binlog.Index{Segments: slices.Clone(st.base), Gaps: tail.Gaps, Missing: tail.Missing, Rollups: tail.Rollups}
			for _, seg := range tail.Segments {
				if seg.Seq >= st.cut {
					merged.Segments = append(merged.Segments, seg)
				}
			}
			ix = merged.Condensed()
		}
	}
	if ix == nil {
		full, err := st.archive.ReadIndex(ctx)
		if err != nil {
			st.base, st.haveBase = nil, false
			return nil, err
		}
		st.cut, st.haveBase = newestRollup(full.Rollups), true
		var older []binlog.Segment
		for _, seg := range full.Segments {
			if seg.Seq < st.cut {
				older = append(older, seg)
			}
		}
		st.base = (&binlog.Index{Segments: older, Gaps: full.Gaps, Missing: full.Missing}).Condensed().Segments
		ix = full.Condensed()
	}
	st.ix, st.indexKeys = ix, keys
	return ix, nil
}

// newestRollup is the first segment of the newest roll-up (the one
// ReadTail reads), 0 when there is none.
func newestRollup(rs []binlog.RollupRange) uint64 {
	var newest binlog.RollupRange
	for _, rr := range rs {
		if rr.LastSeq > newest.LastSeq {
			newest = rr
		}
	}
	return newest.FirstSeq
}

// lastDrill shows the newest drill report of the instance.
func (r *Refresher) lastDrill(ctx context.Context, instance string, now time.Time) error {
	prefix := drill.DrillsPrefix(instance)
	objs, err := r.Repo.Backend().List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("metrics: list the drills of %s: %w", instance, err)
	}
	var newest *drill.Report
	listed := map[string]bool{}
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ".json") {
			continue
		}
		listed[o.Key] = true
		rep, cached := r.drills[o.Key]
		if !cached {
			rep, err = r.readDrill(ctx, o.Key, instance, now)
			if err != nil {
				return err
			}
			r.drills[o.Key] = rep
			if rep != nil && r.primed[instance] {
				// A drill finished since the last refresh: count it (once,
				// also when the activity that wrote it observed it here).
				metrics.ObserveDrill(rep)
			}
		}
		if rep != nil && (newest == nil || rep.Finished.After(newest.Finished) ||
			(rep.Finished.Equal(newest.Finished) && rep.DrillID > newest.DrillID)) {
			newest = rep
		}
	}
	for k := range r.drills {
		if strings.HasPrefix(k, prefix) && !listed[k] {
			delete(r.drills, k)
		}
	}
	if newest != nil {
		metrics.SetLastDrill(newest)
	}
	r.primed[instance] = true
	return nil
}

// readDrill reads one report; nil (remembered) when it is not a report of
// the instance that can be shown, an error when the storage failed.
func (r *Refresher) readDrill(ctx context.Context, key, instance string, now time.Time) (*drill.Report, error) {
	rc, err := r.Repo.Backend().Get(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("metrics: read drill report %s: %w", key, err)
	}
	defer rc.Close()
	rep, err := drill.Decode(rc)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.log().Warn("metrics: ignoring a drill report that does not decode", zap.String("key", key), zap.Error(err))
		return nil, nil
	}
	switch {
	case rep.Instance != instance:
		r.log().Warn("metrics: ignoring a drill report of another instance", zap.String("key", key),
			zap.String("report_instance", rep.Instance))
		return nil, nil
	case rep.Finished.IsZero() || rep.Finished.After(now.Add(FutureSlack)):
		r.log().Warn("metrics: ignoring a drill report with an impossible end time", zap.String("key", key),
			zap.Time("finished", rep.Finished))
		return nil, nil
	}
	clean := *rep
	clean.Phases = nil
	for _, p := range rep.Phases {
		if drillPhases[p.Phase] {
			clean.Phases = append(clean.Phases, p)
		}
	}
	return &clean, nil
}

// setSchedules sets the policy's interval of each schedule kind.
func setSchedules(in *config.Instance, now time.Time) {
	s := in.Schedule
	loc := time.UTC
	if s.TimeZone != "" {
		if l, err := time.LoadLocation(s.TimeZone); err == nil {
			loc = l
		}
	}
	for _, kind := range config.ScheduleKinds {
		var every time.Duration
		switch kind {
		case "full":
			every = SpecInterval(s.Full, now, loc)
		case "logical":
			every = SpecInterval(s.Logical, now, loc)
		case "incremental":
			if s.IncrementalEvery.Active() {
				every = s.IncrementalEvery.Every.Std()
			}
		case "verify":
			every = SpecInterval(s.Verify, now, loc)
		case "prune":
			every = SpecInterval(s.Prune, now, loc)
		case "drill":
			every = SpecInterval(s.Drill, now, loc)
		}
		metrics.SetScheduleInterval(in.ID, kind, every)
	}
}

// intervalFires is how many fires of a spec SpecInterval looks at.
const intervalFires = 16

// SpecInterval is the interval between two runs of a cron or calendar
// spec: the longest between two of its next fires after now (a weekday
// schedule's weekend, a month of 31 days), so that "older than the
// schedule" never fires between two on-time runs. Zero for a spec that is
// off, unset or does not parse.
func SpecInterval(s config.Spec, now time.Time, loc *time.Location) time.Duration {
	if !s.Active() {
		return 0
	}
	sched, err := parseSpec(s)
	if err != nil {
		return 0
	}
	t := sched.Next(now.In(loc))
	var longest time.Duration
	for i := 0; i < intervalFires && !t.IsZero(); i++ {
		next := sched.Next(t)
		if next.IsZero() {
			break
		}
		longest = max(longest, next.Sub(t))
		t = next
	}
	return longest
}

// parseSpec parses a cron expression (five fields or a descriptor) or a
// calendar (as a cron expression with seconds).
func parseSpec(s config.Spec) (cron.Schedule, error) {
	if c := s.Calendar; c != nil {
		or := func(v, def string) string {
			if v == "" {
				return def
			}
			return v
		}
		expr := strings.Join([]string{or(c.Second, "0"), or(c.Minute, "0"), or(c.Hour, "*"), or(c.DayOfMonth, "*"),
			or(c.Month, "*"), or(c.DayOfWeek, "*")}, " ")
		return cron.Parse(expr)
	}
	fields := strings.Fields(s.Cron)
	if len(fields) == 5 && fields[4] == "7" {
		fields[4] = "0" // Sunday, as 7 in cron
	}
	return cron.ParseStandard(strings.Join(fields, " "))
}
