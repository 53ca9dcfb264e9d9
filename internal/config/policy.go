package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Schedule is the part of an instance's policy that `strata schedule
// apply` turns into Temporal Schedules. The top-level schedule: block is the
// fleet default; instances[].schedule overrides it field by field. Every
// field is optional: a kind without a spec gets no schedule.
//
// The rest of the policy lives in the backup blocks (defaults: and
// instances[].backup): compression, compression_level, max_chain_length
// and throttle. The worker and the agents reload all of it when the file
// changes (config.Watcher).
type Schedule struct {
	// Full is when full backups run: a cron expression ("0 2 * * *", or a
	// descriptor such as "@daily"), a calendar mapping (hour: "2",
	// minute: "30", day_of_week: "1-5"), or "off".
	Full Spec `yaml:"full"`
	// IncrementalEvery is the interval of incremental backups ("1h"), or
	// "off". An incremental without a base takes a full.
	IncrementalEvery Interval `yaml:"incremental_every"`
	// Verify and Prune are when VerifyWorkflow and RetentionWorkflow run.
	Verify Spec `yaml:"verify"`
	Prune  Spec `yaml:"prune"`
	// Drill schedules a restore drill (DrillWorkflow) of the newest backup.
	Drill Spec `yaml:"drill"`
	// Logical is when logical backups (a parallel SQL dump, type logical)
	// run, as a spec like Full's.
	Logical Spec `yaml:"logical"`
	// TimeZone is the IANA zone the cron and calendar specs are read in
	// (default UTC).
	TimeZone string `yaml:"time_zone"`
	// Jitter delays each run by a random time up to this, so that a fleet
	// with one spec does not start at once (default 0).
	Jitter Duration `yaml:"jitter"`
	// CatchupWindow is how late a run missed while Temporal was down may
	// still start (default 1h; at least 10s).
	CatchupWindow Duration `yaml:"catchup_window"`
}

// ScheduleKinds are the schedule kinds of an instance, in the order the
// diff prints them.
var ScheduleKinds = []string{"full", "incremental", "logical", "verify", "prune", "drill"}

// DefaultCatchupWindow is the catch-up window when none is configured.
const DefaultCatchupWindow = Duration(time.Hour)

// Spec is when a scheduled kind runs: a cron expression, a calendar, or
// off. The zero Spec is unset (inherits the fleet default).
type Spec struct {
	Cron     string
	Calendar *Calendar
	Off      bool
}

// Calendar is a calendar spec; each field is a cron-style field ("*",
// "5", "1-5", "0-30/10", "1,15"); unset fields are "*" except Second and
// Minute, which default to 0.
type Calendar struct {
	Second     string `yaml:"second"`
	Minute     string `yaml:"minute"`
	Hour       string `yaml:"hour"`
	DayOfMonth string `yaml:"day_of_month"`
	Month      string `yaml:"month"`
	DayOfWeek  string `yaml:"day_of_week"`
}

// IsSet reports whether the spec was given (a schedule, or off).
func (s Spec) IsSet() bool { return s.Cron != "" || s.Calendar != nil || s.Off }

// Active reports whether the spec schedules runs.
func (s Spec) Active() bool { return !s.Off && (s.Cron != "" || s.Calendar != nil) }

// String is the spec as written: the cron expression, "off", or the
// calendar's fields.
func (s Spec) String() string {
	switch {
	case s.Off:
		return "off"
	case s.Calendar != nil:
		c := s.Calendar
		return fmt.Sprintf("calendar(second=%s minute=%s hour=%s day_of_month=%s month=%s day_of_week=%s)",
			or(c.Second, "0"), or(c.Minute, "0"), or(c.Hour, "*"), or(c.DayOfMonth, "*"), or(c.Month, "*"), or(c.DayOfWeek, "*"))
	}
	return s.Cron
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// UnmarshalYAML accepts a cron string, "off", or a calendar mapping.
func (s *Spec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v := strings.TrimSpace(n.Value)
		if v == "off" || v == "none" {
			*s = Spec{Off: true}
		} else {
			*s = Spec{Cron: v}
		}
		return nil
	case yaml.MappingNode:
		known := map[string]bool{"second": true, "minute": true, "hour": true, "day_of_month": true, "month": true, "day_of_week": true}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; !known[k] {
				return fmt.Errorf("line %d: calendar field %q is unknown: use second, minute, hour, day_of_month, month, day_of_week", n.Content[i].Line, k)
			}
		}
		var c Calendar
		if err := n.Decode(&c); err != nil {
			return err
		}
		*s = Spec{Calendar: &c}
		return nil
	}
	return fmt.Errorf("line %d: a schedule is a cron expression, a calendar mapping or off", n.Line)
}

// Interval is a duration, or off; the zero Interval is unset.
type Interval struct {
	Every Duration
	Off   bool
}

// IsSet reports whether the interval was given.
func (i Interval) IsSet() bool { return i.Every != 0 || i.Off }

// Active reports whether the interval schedules runs.
func (i Interval) Active() bool { return !i.Off && i.Every > 0 }

func (i Interval) String() string {
	if i.Off {
		return "off"
	}
	return i.Every.Std().String()
}

// UnmarshalYAML accepts a Go duration, off, or "" (unset).
func (i *Interval) UnmarshalYAML(n *yaml.Node) error {
	switch strings.TrimSpace(n.Value) {
	case "off", "none":
		*i = Interval{Off: true}
		return nil
	case "":
		*i = Interval{}
		return nil
	}
	var d Duration
	if err := d.UnmarshalYAML(n); err != nil {
		return err
	}
	*i = Interval{Every: d}
	return nil
}

// mergeSchedule fills the unset fields of s from def.
func mergeSchedule(s *Schedule, def Schedule) {
	for _, p := range []struct{ dst, src *Spec }{{&s.Full, &def.Full}, {&s.Verify, &def.Verify}, {&s.Prune, &def.Prune}, {&s.Drill, &def.Drill}, {&s.Logical, &def.Logical}} {
		if !p.dst.IsSet() {
			*p.dst = *p.src
		}
	}
	if !s.IncrementalEvery.IsSet() {
		s.IncrementalEvery = def.IncrementalEvery
	}
	inherit(&s.TimeZone, def.TimeZone)
	inherit(&s.Jitter, def.Jitter)
	inherit(&s.CatchupWindow, def.CatchupWindow)
	if s.CatchupWindow == 0 {
		s.CatchupWindow = DefaultCatchupWindow
	}
}

// validateSchedule checks the specs, the zone and the durations. For an
// instance, def is the fleet default it was merged with: what it inherited
// unchanged is reported once, under the default's key.
func validateSchedule(key string, s, def *Schedule, bad func(key, format string, a ...any)) {
	if def != nil {
		own := *s
		if own.Full.String() == def.Full.String() {
			own.Full = Spec{}
		}
		if own.Verify.String() == def.Verify.String() {
			own.Verify = Spec{}
		}
		if own.Prune.String() == def.Prune.String() {
			own.Prune = Spec{}
		}
		if own.Drill.String() == def.Drill.String() {
			own.Drill = Spec{}
		}
		if own.Logical.String() == def.Logical.String() {
			own.Logical = Spec{}
		}
		if own.IncrementalEvery == def.IncrementalEvery {
			own.IncrementalEvery = Interval{}
		}
		if own.TimeZone == def.TimeZone {
			own.TimeZone = ""
		}
		if own.Jitter == def.Jitter {
			own.Jitter = 0
		}
		if own.CatchupWindow == def.CatchupWindow || own.CatchupWindow == DefaultCatchupWindow {
			own.CatchupWindow = 0
		}
		s = &own
	}
	for name, sp := range map[string]Spec{"full": s.Full, "logical": s.Logical, "verify": s.Verify, "prune": s.Prune, "drill": s.Drill} {
		if err := checkSpec(sp); err != nil {
			bad(key+"."+name, "%v", err)
		}
	}
	if i := s.IncrementalEvery; !i.Off && i.Every != 0 && i.Every < Duration(time.Minute) {
		bad(key+".incremental_every", "%s is too short (at least 1m, or off)", i.Every.Std())
	}
	if s.TimeZone != "" {
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			bad(key+".time_zone", "%q is not an IANA time zone (e.g. UTC, Europe/Berlin)", s.TimeZone)
		}
	}
	if s.Jitter < 0 {
		bad(key+".jitter", "must not be negative")
	}
	if s.CatchupWindow != 0 && s.CatchupWindow < Duration(10*time.Second) {
		bad(key+".catchup_window", "%s is too short (at least 10s, the least Temporal accepts)", s.CatchupWindow.Std())
	}
	if s.CatchupWindow > Duration(7*24*time.Hour) {
		bad(key+".catchup_window", "%s is too long (at most 168h: a backup missed longer ago is not worth starting late)", s.CatchupWindow.Std())
	}
}

// checkSpec validates a cron expression or a calendar.
func checkSpec(s Spec) error {
	if s.Calendar != nil {
		c := s.Calendar
		for _, f := range []struct {
			name, v  string
			min, max int
		}{{"second", c.Second, 0, 59}, {"minute", c.Minute, 0, 59}, {"hour", c.Hour, 0, 23},
			{"day_of_month", c.DayOfMonth, 1, 31}, {"month", c.Month, 1, 12}, {"day_of_week", c.DayOfWeek, 0, 6}} {
			if f.v == "" {
				continue
			}
			if _, err := ParseCronField(f.v, f.min, f.max); err != nil {
				return fmt.Errorf("calendar %s: %v", f.name, err)
			}
		}
		return nil
	}
	if s.Cron == "" || s.Off {
		return nil
	}
	return checkCron(s.Cron)
}

var cronDescriptors = map[string]bool{"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true, "@daily": true, "@midnight": true, "@hourly": true}

var (
	monthNames = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}
	dayNames   = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
)

// checkCron validates a five-field cron expression (minute hour
// day-of-month month day-of-week) or a descriptor.
func checkCron(expr string) error {
	if strings.HasPrefix(expr, "@") {
		if cronDescriptors[expr] {
			return nil
		}
		return fmt.Errorf("%q: use @yearly, @monthly, @weekly, @daily or @hourly, a five-field cron expression, or off (for an interval use incremental_every)", expr)
	}
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return fmt.Errorf("%q has %d fields: a cron expression has five (minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\"", expr, len(fields))
	}
	limits := []struct {
		name     string
		min, max int
		names    map[string]int
	}{{"minute", 0, 59, nil}, {"hour", 0, 23, nil}, {"day-of-month", 1, 31, nil}, {"month", 1, 12, monthNames}, {"day-of-week", 0, 7, dayNames}}
	for i, f := range fields {
		l := limits[i]
		v := strings.ToLower(f)
		for name, n := range l.names {
			v = strings.ReplaceAll(v, name, strconv.Itoa(n))
		}
		if _, err := ParseCronField(v, l.min, l.max); err != nil {
			return fmt.Errorf("%q: %s field: %v", expr, l.name, err)
		}
	}
	return nil
}

// CronRange is one range of a cron field: Start to End by Step.
type CronRange struct{ Start, End, Step int }

// ParseCronField parses "*", "*/s", "a", "a-b", "a-b/s" and comma lists of
// them, with values in [min, max].
func ParseCronField(v string, min, max int) ([]CronRange, error) {
	var out []CronRange
	for _, part := range strings.Split(v, ",") {
		r := CronRange{Start: min, End: max, Step: 1}
		base, step, hasStep := strings.Cut(part, "/")
		if hasStep {
			s, err := strconv.Atoi(step)
			if err != nil || s < 1 {
				return nil, fmt.Errorf("%q: the step after / must be a positive number", part)
			}
			r.Step = s
		}
		if base != "*" {
			lo, hi, isRange := strings.Cut(base, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number, range or *", part)
			}
			r.Start, r.End = a, a
			if isRange {
				b, err := strconv.Atoi(hi)
				if err != nil || b < a {
					return nil, fmt.Errorf("%q is not a range low-high", part)
				}
				r.End = b
			} else if hasStep {
				r.End = max
			}
		}
		if r.Start < min || r.End > max {
			return nil, fmt.Errorf("%q is out of range (%d-%d)", part, min, max)
		}
		out = append(out, r)
	}
	return out, nil
}
