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
var backupTypes = []string{manifest.TypeFull, manifest.TypeIncremental, manifest.TypeDifferential}

// drillPhases are the phases strata_drill_phase_seconds is exported for.
var drillPhases = map[string]bool{drill.PhaseRestore: true, drill.PhaseReplay: true, drill.PhaseStart: true,
	drill.PhaseVerify: true, drill.PhaseTeardown: true}

// Refresher sets the catalog-derived gauges. Manifests and drill reports
// are immutable once written: each is read once and remembered by key, so
// a refresh costs the listings and the objects written since the last one.
// It is safe for concurrent use; refreshes run one at a time.
type Refresher struct {
	Repo *repo.Repo
	// Config returns the live config (the policy watcher's current one).
	Config func() *config.Config
	Log    *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu        sync.Mutex
	manifests map[string]*manifest.Manifest // by key; nil: unreadable
	drills    map[string]*drill.Report      // by key; nil: unreadable or not the instance's
	instances map[string]bool               // shown at the last refresh
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

// Refresh recomputes every gauge from the repository and the config. A
// part that cannot be read (the repository down) keeps its previous values
// and is returned as an error after the other parts were refreshed.
func (r *Refresher) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.manifests == nil {
		r.manifests, r.drills, r.instances = map[string]*manifest.Manifest{}, map[string]*drill.Report{}, map[string]bool{}
	}
	cfg := r.Config()
	now := r.now()
	var errs []error
	seen := map[string]bool{}
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		seen[in.ID] = true
		setSchedules(in, now)
		backups, err := r.backups(ctx, in.ID, now)
		if err != nil {
			errs = append(errs, err)
		} else {
			setLastBackups(in.ID, backups)
			if err := r.pitr(ctx, in.ID, backups); err != nil {
				errs = append(errs, err)
			}
		}
		if err := r.lastDrill(ctx, in.ID, now); err != nil {
			errs = append(errs, err)
		}
	}
	for id := range r.instances {
		if !seen[id] {
			metrics.ForgetInstance(id)
		}
	}
	r.instances = seen
	return errors.Join(errs...)
}

// backups returns the instance's complete backups that are plausible,
// sorted by start time.
func (r *Refresher) backups(ctx context.Context, instance string, now time.Time) ([]*manifest.Manifest, error) {
	prefix := repo.BackupsPrefix(instance)
	objs, err := r.Repo.Backend().List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("metrics: list the backups of %s: %w", instance, err)
	}
	var out []*manifest.Manifest
	listed := map[string]bool{}
	for _, o := range objs {
		id, name, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if !ok || id == "" || name != manifest.FileName {
			continue
		}
		listed[o.Key] = true
		m, cached := r.manifests[o.Key]
		if !cached {
			m, err = r.Repo.ReadManifest(ctx, instance, id)
			switch {
			case errors.Is(err, repo.ErrBackupNotFound):
				continue // deleted since listed
			case errors.Is(err, manifest.ErrInvalid), errors.Is(err, manifest.ErrNewerFormat):
				r.log().Warn("metrics: ignoring a manifest that does not decode", zap.String("key", o.Key), zap.Error(err))
				m = nil
			case err != nil:
				// Other read errors (the storage) are not remembered.
				return nil, fmt.Errorf("metrics: read the backups of %s: %w", instance, err)
			case !plausible(m, now):
				r.log().Warn("metrics: ignoring a manifest with impossible times", zap.String("key", o.Key),
					zap.Time("start", m.StartTime), zap.Time("end", m.EndTime))
				m = nil
			}
			r.manifests[o.Key] = m
		}
		if m != nil {
			out = append(out, m)
		}
	}
	for k := range r.manifests {
		if strings.HasPrefix(k, prefix) && !listed[k] {
			delete(r.manifests, k) // pruned
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
func (r *Refresher) pitr(ctx context.Context, instance string, backups []*manifest.Manifest) error {
	ix, err := (&binlog.Store{B: r.Repo.Backend(), Instance: instance, CheckAllData: true}).ReadIndex(ctx)
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
