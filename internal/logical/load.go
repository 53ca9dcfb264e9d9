package logical

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// kindGrants is the kind of the file of grants on single tables, columns
// and routines (the dump's KindGrants), applied after every other file.
const kindGrants Kind = "grants"

// LoadOptions configures Load.
type LoadOptions struct {
	// Parallelism is the number of connections loading data files at once
	// (default 2). Load uses at most this many connections of the pool at
	// a time.
	Parallelism int
	// Include and Exclude are "schema.table" patterns (path.Match syntax,
	// matched separately against the schema and the object name; a pattern
	// without a dot is "schema.*"). Empty Include: everything. They select
	// tables, sequences, views, routines and events by their name in the
	// dump; a trigger goes with its table.
	Include, Exclude []string
	// Rename maps tables of the dump to new names ("shop.orders" ->
	// "shop.orders_restored", also into another schema). Triggers of a
	// renamed table are not loaded and views are not rewritten (both
	// reported in LoadResult.Notes).
	Rename map[string]string
	// LoadID names this load's progress record in the target; a load with
	// the id of an unfinished one resumes it. Empty: a new random id
	// (LoadResult.LoadID).
	LoadID string
	// Users loads accounts and grants; accounts that exist in the target
	// are skipped (and reported).
	Users bool
	// Binlog writes the load to the target's binary log; by default each
	// load connection runs with sql_log_bin=0.
	Binlog bool
	// Replace drops objects that exist in the target under a name the load
	// creates. Without it such an object is an error that names it, and
	// nothing is changed.
	Replace bool
	// DeferIndexes creates tables without their TableMeta.DeferredIndexes
	// and adds them once the table's data is loaded.
	DeferIndexes bool
	// Progress, if set, is called (never concurrently) after every step.
	Progress func(LoadProgress)
}

// LoadProgress is the state of a running load.
type LoadProgress struct {
	Phase      string // users, databases, tables, sequences, data, views, routines, triggers, events, done
	File       string // the file just finished
	FilesDone  int    // data files loaded (also those an earlier attempt loaded)
	FilesTotal int
	RowsDone   int64
	RowsTotal  int64
	BytesDone  int64
	BytesTotal int64
}

// LoadResult is what a load did.
type LoadResult struct {
	LoadID       string
	Files        int   // files applied by this run
	SkippedFiles int   // data files an earlier attempt with the same LoadID had loaded
	Tables       int   // tables created or completed by this run
	Rows         int64 // rows inserted by this run
	// IndexTime is the time spent adding deferred indexes.
	IndexTime time.Duration
	// Notes are things the caller should know: accounts that existed,
	// triggers not loaded, views not rewritten.
	Notes []string
}

// Load applies a dump to the server db: accounts, databases, tables,
// sequences, the data files in parallel, deferred indexes, views, routines,
// triggers, events and grants on single objects, in this order (see
// docs/logical-load.md). It records its progress in the
// target (ProgressSchema), so that after a crash the same call with the
// same LoadID skips what is done and loads no row twice; the record is
// removed when the load has finished. Every load connection runs with
// foreign_key_checks=0, unique_checks=0,
// sql_mode='NO_AUTO_VALUE_ON_ZERO' (files set their own where the object
// needs one) and time_zone='+00:00', the zone the dump reads TIMESTAMP
// values in.
func Load(ctx context.Context, db *sql.DB, idx *Index, src Source, opt LoadOptions) (*LoadResult, error) {
	l, err := newLoader(db, idx, src, opt)
	if err != nil {
		return nil, err
	}
	if err := l.run(ctx); err != nil {
		return l.res, err
	}
	return l.res, nil
}

type objectJob struct {
	file   *File
	stmts  []string
	create int // index in stmts of the CREATE statement, -1: none
	head   createHead
	schema string // target schema
	name   string // target name
}

type tableJob struct {
	obj   *objectJob
	meta  *TableMeta
	src   [2]string
	dst   [2]string
	data  []*File
	bytes int64

	deferred   []string // index definitions removed from the CREATE TABLE
	createdYet bool     // created by an earlier attempt of this load
	tx         bool     // its engine in the target is transactional
	pending    []*File
	remaining  int  // pending data files not loaded yet (under loader.mu)
	counted    bool // in LoadResult.Tables (under loader.mu)
}

type loader struct {
	db     *sql.DB
	idx    *Index
	src    Source
	opt    LoadOptions
	filter *filter
	rename map[[2]string][2]string

	done      map[progressKey]bool // marks at the start; read-only after
	maxPacket int

	users     *objectJob
	grants    *objectJob            // grants on single objects, applied last
	accounts  map[account]int       // what loadAccounts does with each account
	databases map[string]*objectJob // by schema of the dump
	tables    []*tableJob
	bySrc     map[[2]string]*tableJob
	objects   map[Kind][]*objectJob // sequence, view, routine, trigger, event

	mu   sync.Mutex
	res  *LoadResult
	prog LoadProgress
}

func newLoader(db *sql.DB, idx *Index, src Source, opt LoadOptions) (*loader, error) {
	if idx == nil {
		return nil, errors.New("load: no index")
	}
	if idx.Format != FormatVersion {
		return nil, fmt.Errorf("load: the dump has format %d, this Strata reads format %d", idx.Format, FormatVersion)
	}
	if opt.Parallelism <= 0 {
		opt.Parallelism = 2
	}
	f, err := parseFilter(opt.Include, opt.Exclude)
	if err != nil {
		return nil, err
	}
	l := &loader{db: db, idx: idx, src: src, opt: opt, filter: f,
		rename: map[[2]string][2]string{}, databases: map[string]*objectJob{},
		bySrc: map[[2]string]*tableJob{}, objects: map[Kind][]*objectJob{},
		res: &LoadResult{LoadID: opt.LoadID}}
	targets := map[[2]string][2]string{}
	for from, to := range opt.Rename {
		fs, ft, err := splitName(from)
		if err != nil {
			return nil, fmt.Errorf("rename %q: %v", from, err)
		}
		ts, tt, err := splitName(to)
		if err != nil {
			return nil, fmt.Errorf("rename %q to %q: %v", from, to, err)
		}
		k, v := [2]string{fs, ft}, [2]string{ts, tt}
		if k == v {
			return nil, fmt.Errorf("rename %q: source and target are the same table", from)
		}
		if o, dup := targets[v]; dup {
			return nil, fmt.Errorf("rename: %s and %s both go to %s", QuoteName(o[0], o[1]), QuoteName(fs, ft), QuoteName(ts, tt))
		}
		targets[v] = k
		l.rename[k] = v
	}
	if l.res.LoadID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		l.res.LoadID = "load-" + hex.EncodeToString(b[:])
	}
	if len(l.res.LoadID) > 255 {
		return nil, fmt.Errorf("load id %q is longer than 255 bytes", l.res.LoadID[:32]+"...")
	}
	return l, nil
}

func (l *loader) note(format string, args ...any) {
	l.mu.Lock()
	l.res.Notes = append(l.res.Notes, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *loader) report(phase, file string, rows, bytes int64, fileDone bool) {
	if l.opt.Progress == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prog.Phase, l.prog.File = phase, file
	l.prog.RowsDone += rows
	l.prog.BytesDone += bytes
	if fileDone {
		l.prog.FilesDone++
	}
	l.opt.Progress(l.prog)
}

// session sets the load's session on a connection (again before every
// file, since files set their own session context).
func (l *loader) session(ctx context.Context, c *sql.Conn) error {
	if _, err := c.ExecContext(ctx, "SET NAMES utf8mb4"); err != nil {
		return err
	}
	s := "SET SESSION foreign_key_checks=0, unique_checks=0, sql_mode='NO_AUTO_VALUE_ON_ZERO', time_zone='+00:00'"
	if !l.opt.Binlog {
		s += ", sql_log_bin=0"
	}
	if _, err := c.ExecContext(ctx, s); err != nil {
		return fmt.Errorf("set the load session (%s): %w", s, err)
	}
	return nil
}

// conn takes a connection of the pool with the load session.
func (l *loader) conn(ctx context.Context) (*sql.Conn, error) {
	c, err := l.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if err := l.session(ctx, c); err != nil {
		discardConn(c)
		return nil, err
	}
	return c, nil
}

// discardConn closes a connection and keeps it out of the pool, so its load
// session (sql_log_bin=0, foreign_key_checks=0, ...) never serves anyone
// else.
func discardConn(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	_ = c.Close()
}

func (l *loader) run(ctx context.Context) error {
	c, err := l.conn(ctx)
	if err != nil {
		return fmt.Errorf("load: connect: %w", err)
	}
	defer func() {
		if c != nil {
			discardConn(c)
		}
	}()
	if err := c.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&l.maxPacket); err != nil {
		return fmt.Errorf("load: read max_allowed_packet: %w", err)
	}
	if err := l.plan(ctx, c); err != nil {
		return err
	}
	l.done, err = openProgress(ctx, c, l.res.LoadID)
	if err != nil {
		return err
	}
	if err := mark(ctx, c, l.res.LoadID, "", stepStart, 0); err != nil {
		return err
	}
	if err := l.preflight(ctx, c); err != nil {
		if len(l.done) == 0 {
			// A new load refused: leave no progress record behind.
			_ = finishProgress(context.WithoutCancel(ctx), c, l.res.LoadID)
		}
		return err
	}
	if l.users != nil {
		l.report("users", "", 0, 0, false)
		if err := l.loadAccounts(ctx, c, l.users); err != nil {
			return err
		}
	}
	l.report("databases", "", 0, 0, false)
	if err := l.createDatabases(ctx, c); err != nil {
		return err
	}
	l.report("tables", "", 0, 0, false)
	if l.opt.Replace {
		// Drop every table to replace before creating any: a new table's
		// foreign key must not meet the old definition of its parent.
		for _, t := range l.tables {
			if err := l.dropForReplace(ctx, c, t); err != nil {
				return err
			}
		}
	}
	for _, t := range l.tables {
		if err := l.createTable(ctx, c, t); err != nil {
			return err
		}
	}
	l.report("sequences", "", 0, 0, false)
	for _, o := range l.objects[KindSequence] {
		if err := l.applyObject(ctx, c, o); err != nil {
			return err
		}
	}
	// The data phase uses Parallelism connections of its own.
	discardConn(c)
	c = nil
	if err := l.loadData(ctx); err != nil {
		return err
	}
	if c, err = l.conn(ctx); err != nil {
		return fmt.Errorf("load: connect: %w", err)
	}
	l.report("views", "", 0, 0, false)
	if err := l.createViews(ctx, c); err != nil {
		return err
	}
	for _, k := range []Kind{KindRoutine, KindTrigger, KindEvent} {
		l.report(string(k)+"s", "", 0, 0, false)
		for _, o := range l.objects[k] {
			if err := l.applyObject(ctx, c, o); err != nil {
				return err
			}
		}
	}
	if l.grants != nil {
		l.report("grants", "", 0, 0, false)
		if err := l.loadAccounts(ctx, c, l.grants); err != nil {
			return err
		}
	}
	if err := finishProgress(ctx, c, l.res.LoadID); err != nil {
		return fmt.Errorf("load: finished, but: %w", err)
	}
	l.report("done", "", 0, 0, false)
	return nil
}

// plan reads the schema object files, applies the filter and the renames,
// and groups the data files by table.
func (l *loader) plan(ctx context.Context, c *sql.Conn) error {
	dataOf := map[[2]string][]*File{}
	hasObjects := map[string]bool{}
	for i := range l.idx.Files {
		f := &l.idx.Files[i]
		if f.Schema == ProgressSchema {
			l.note("skipped %s: the schema %s holds load progress records and is never loaded", f.Name, ProgressSchema)
			continue
		}
		switch f.Kind {
		case KindData:
			dataOf[[2]string{f.Schema, f.Object}] = append(dataOf[[2]string{f.Schema, f.Object}], f)
			continue
		case KindUsers, kindGrants:
			if !l.opt.Users {
				l.note("accounts and grants not loaded (%s): loading them was not asked for", f.Name)
				continue
			}
		case KindDatabase:
		case KindTable, KindSequence, KindView, KindRoutine, KindEvent:
			if !l.filter.match(f.Schema, f.Object) {
				continue
			}
		case KindTrigger:
		default:
			return fmt.Errorf("%w: file %s has the unknown kind %q", ErrCorrupt, f.Name, f.Kind)
		}
		o, err := l.readObject(ctx, f)
		if err != nil {
			return err
		}
		switch f.Kind {
		case KindUsers:
			if l.users != nil {
				return fmt.Errorf("%w: two users files (%s, %s)", ErrCorrupt, l.users.file.Name, f.Name)
			}
			l.users = o
		case kindGrants:
			if l.grants != nil {
				return fmt.Errorf("%w: two grants files (%s, %s)", ErrCorrupt, l.grants.file.Name, f.Name)
			}
			l.grants = o
		case KindDatabase:
			if o.create < 0 || (o.head.What != "DATABASE" && o.head.What != "SCHEMA") {
				return fmt.Errorf("%w: %s has no CREATE DATABASE statement", ErrCorrupt, f.Name)
			}
			l.databases[f.Schema] = o
		case KindTable:
			if f.Table == nil {
				return fmt.Errorf("%w: table file %s has no table metadata", ErrCorrupt, f.Name)
			}
			if o.create < 0 || o.head.What != "TABLE" {
				return fmt.Errorf("%w: %s has no CREATE TABLE statement", ErrCorrupt, f.Name)
			}
			t := &tableJob{obj: o, meta: f.Table, src: [2]string{f.Schema, f.Object}, dst: [2]string{f.Schema, f.Object}}
			if to, ok := l.rename[t.src]; ok {
				t.dst = to
			}
			o.schema, o.name = t.dst[0], t.dst[1]
			l.tables = append(l.tables, t)
			l.bySrc[t.src] = t
			hasObjects[t.dst[0]] = true
		case KindTrigger:
			if o.create < 0 || o.head.What != "TRIGGER" {
				return fmt.Errorf("%w: %s has no CREATE TRIGGER statement", ErrCorrupt, f.Name)
			}
			if !l.filter.match(f.Schema, o.head.TriggerTbl) {
				continue
			}
			if to, ok := l.rename[[2]string{f.Schema, o.head.TriggerTbl}]; ok {
				l.note("trigger %s of %s not loaded: its table is renamed to %s (a trigger's body may name its table; create it by hand if wanted)",
					QuoteName(f.Schema, f.Object), QuoteName(f.Schema, o.head.TriggerTbl), QuoteName(to[0], to[1]))
				continue
			}
			l.objects[f.Kind] = append(l.objects[f.Kind], o)
			hasObjects[f.Schema] = true
		default:
			want := map[Kind][]string{KindSequence: {"SEQUENCE"}, KindView: {"VIEW"}, KindRoutine: {"PROCEDURE", "FUNCTION"}, KindEvent: {"EVENT"}}[f.Kind]
			if o.create < 0 || !contains(want, o.head.What) {
				return fmt.Errorf("%w: %s has no CREATE %s statement", ErrCorrupt, f.Name, strings.Join(want, " or "))
			}
			l.objects[f.Kind] = append(l.objects[f.Kind], o)
			hasObjects[f.Schema] = true
		}
	}
	for from := range l.rename {
		if l.bySrc[from] == nil {
			return fmt.Errorf("rename %s: the dump has no such table, or the filter leaves it out", QuoteName(from[0], from[1]))
		}
	}
	dst := map[[2]string]*tableJob{}
	for _, t := range l.tables {
		if o := dst[t.dst]; o != nil {
			return fmt.Errorf("rename: %s and %s would both be loaded as %s", QuoteName(o.src[0], o.src[1]), QuoteName(t.src[0], t.src[1]), QuoteName(t.dst[0], t.dst[1]))
		}
		dst[t.dst] = t
		t.data = dataOf[t.src]
		delete(dataOf, t.src)
		sort.Slice(t.data, func(i, j int) bool { return t.data[i].Part < t.data[j].Part })
		for i, f := range t.data {
			if f.Part != i {
				return fmt.Errorf("%w: table %s has data parts %d and %d but no part %d", ErrCorrupt, QuoteName(t.src[0], t.src[1]), t.data[0].Part, f.Part, i)
			}
			if f.Range != nil && len(t.meta.PrimaryKey) == 0 {
				return fmt.Errorf("%w: data file %s has a key range but its table no key", ErrCorrupt, f.Name)
			}
			t.bytes += f.Size
		}
		if t.meta.Parts != 0 && t.meta.Parts != len(t.data) {
			return fmt.Errorf("%w: table %s has %d data files, its metadata says %d", ErrCorrupt, QuoteName(t.src[0], t.src[1]), len(t.data), t.meta.Parts)
		}
		if l.opt.DeferIndexes && len(t.data) > 0 {
			t.deferred = t.meta.DeferredIndexes
		}
	}
	for k, files := range dataOf {
		if l.filter.match(k[0], k[1]) {
			return fmt.Errorf("%w: data file %s has no table file for %s", ErrCorrupt, files[0].Name, QuoteName(k[0], k[1]))
		}
	}
	// Databases: where something is loaded, and empty schemas the filter
	// keeps. A rename into a schema the dump does not have creates it like
	// the schema of the table's source.
	all := l.databases
	l.databases = map[string]*objectJob{}
	for s, o := range all {
		if hasObjects[s] || l.filter.matchSchema(s) {
			l.databases[s] = o
		}
	}
	for _, t := range l.tables {
		s := t.dst[0]
		if l.databases[s] != nil {
			continue
		}
		o := &objectJob{create: -1}
		if like := all[t.src[0]]; like != nil {
			cp := *like
			o = &cp
		}
		o.schema, o.name = s, s
		l.databases[s] = o
	}
	for s := range hasObjects {
		if l.databases[s] == nil {
			l.databases[s] = &objectJob{create: -1, schema: s, name: s}
		}
	}
	for _, t := range l.tables {
		l.prog.FilesTotal += len(t.data)
		for _, f := range t.data {
			l.prog.RowsTotal += f.Rows
			l.prog.BytesTotal += f.Size
		}
	}
	_ = c
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readObject reads and splits a schema object file.
func (l *loader) readObject(ctx context.Context, f *File) (*objectJob, error) {
	data, err := l.readAll(ctx, f)
	if err != nil {
		return nil, err
	}
	stmts, err := splitStatements(f.Name, data)
	if err != nil {
		return nil, err
	}
	o := &objectJob{file: f, stmts: stmts, create: -1, schema: f.Schema, name: f.Object}
	for i, s := range stmts {
		h, ok, err := parseCreate(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s statement %d: %v", ErrCorrupt, f.Name, i+1, err)
		}
		if ok && h.What != "USER" && h.What != "ROLE" {
			if o.create >= 0 {
				return nil, fmt.Errorf("%w: %s has more than one CREATE statement", ErrCorrupt, f.Name)
			}
			o.create, o.head = i, h
		}
	}
	if o.create >= 0 && f.Kind != KindDatabase && f.Object != "" && o.head.Name != f.Object {
		return nil, fmt.Errorf("%w: %s creates %s, its index entry names %s", ErrCorrupt, f.Name, QuoteIdent(o.head.Name), QuoteIdent(f.Object))
	}
	return o, nil
}

// readAll reads a whole (small) file, failing on any error of the Source,
// ErrCorrupt included.
func (l *loader) readAll(ctx context.Context, f *File) ([]byte, error) {
	r, err := l.src.Open(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("load: open %s: %w", f.Name, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("load: read %s: %w", f.Name, err)
	}
	return data, nil
}

// existence checks

func (l *loader) tableType(ctx context.Context, q queryer, schema, name string) (string, error) {
	var typ string
	err := q.QueryRowContext(ctx, "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", schema, name).Scan(&typ)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return typ, err
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// objectExists reports whether the target has the object that o creates.
func (l *loader) objectExists(ctx context.Context, q queryer, o *objectJob) (bool, error) {
	var query string
	args := []any{o.schema, o.name}
	switch o.head.What {
	case "TABLE", "VIEW", "SEQUENCE":
		typ, err := l.tableType(ctx, q, o.schema, o.name)
		return typ != "", err
	case "PROCEDURE", "FUNCTION":
		query = "SELECT 1 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME = ? AND ROUTINE_TYPE = ?"
		args = append(args, o.head.What)
	case "TRIGGER":
		query = "SELECT 1 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ?"
	case "EVENT":
		query = "SELECT 1 FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? AND EVENT_NAME = ?"
	default:
		return false, fmt.Errorf("cannot check for a %s", o.head.What)
	}
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (o *objectJob) describe() string {
	return strings.ToLower(o.head.What) + " " + QuoteName(o.schema, o.name)
}

func (o *objectJob) dropStatement() string {
	what := o.head.What
	if what == "SEQUENCE" {
		what = "TABLE" // a sequence is a table; DROP TABLE also drops one on MariaDB
	}
	return "DROP " + what + " IF EXISTS " + QuoteName(o.schema, o.name)
}

// preflight refuses, before anything is changed, objects of the target that
// the load would have to overwrite, unless Replace (objects an earlier
// attempt of this load created are its own).
func (l *loader) preflight(ctx context.Context, c *sql.Conn) error {
	var clash []string
	check := func(o *objectJob) error {
		ex, err := l.objectExists(ctx, c, o)
		if err != nil {
			return fmt.Errorf("load: check %s: %w", o.describe(), err)
		}
		if ex && !l.done[progressKey{o.file.Name, stepCreate}] {
			clash = append(clash, o.describe())
		}
		return nil
	}
	for _, t := range l.tables {
		if err := check(t.obj); err != nil {
			return err
		}
	}
	for _, k := range []Kind{KindSequence, KindView, KindRoutine, KindTrigger, KindEvent} {
		for _, o := range l.objects[k] {
			if err := check(o); err != nil {
				return err
			}
		}
	}
	if len(clash) > 0 && !l.opt.Replace {
		return &ExistsError{Objects: clash}
	}
	return nil
}

// ExistsError is Load's refusal to overwrite objects of the target.
type ExistsError struct {
	Objects []string // "table `shop`.`orders`", ...
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("the target already has %s: load with Replace to drop and recreate, or rename, or exclude them; nothing was changed",
		strings.Join(e.Objects, ", "))
}

// execStmt runs a statement of a file, naming the file in the error.
func execStmt(ctx context.Context, e execer, f *File, stmt string) error {
	if _, err := e.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("load %s: %w (statement: %s)", f.Name, err, abbrev(stmt))
	}
	return nil
}

func abbrev(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// users

// What loadAccounts does with an account, decided at its first statement.
const (
	acctCreate  = iota + 1 // not in the target: create it and apply its grants
	acctSkip               // in the target before the load: leave it alone
	acctRegrant            // created by an earlier attempt: its grants again, no CREATE
)

// loadAccounts applies a users file (accounts, global and schema grants)
// or a grants file (grants on single tables and routines). An account that
// exists in the target and was not created by this load is left alone. A
// grant on an object that the load left out (filter, rename) is a note.
func (l *loader) loadAccounts(ctx context.Context, c *sql.Conn, o *objectJob) error {
	if l.done[progressKey{o.file.Name, stepDone}] {
		return nil
	}
	if err := l.session(ctx, c); err != nil {
		return err
	}
	if l.accounts == nil {
		l.accounts = map[account]int{}
	}
	for _, s := range o.stmts {
		a, create, ok, err := statementAccount(s)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, o.file.Name, err)
		}
		if ok {
			if l.accounts[a] == 0 {
				var n int
				if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ?", a.User, a.Host).Scan(&n); err != nil {
					return fmt.Errorf("load: check account %s: %w", a, err)
				}
				switch {
				case n == 0:
					l.accounts[a] = acctCreate
				case l.done[progressKey{a.String(), stepAccount}]:
					l.accounts[a] = acctRegrant
				default:
					l.accounts[a] = acctSkip
					l.note("account %s exists in the target: not changed, its grants in the dump not applied", a)
				}
			}
			switch {
			case l.accounts[a] == acctSkip, l.accounts[a] == acctRegrant && create:
				continue
			case create:
				if err := mark(ctx, c, l.res.LoadID, a.String(), stepAccount, 0); err != nil {
					return err
				}
			}
		}
		if err := execStmt(ctx, c, o.file, s); err != nil {
			var me *mysql.MySQLError
			if o.file.Kind == kindGrants && errors.As(err, &me) && (me.Number == 1146 || me.Number == 1305 || me.Number == 1049) {
				l.note("not applied (its object is not loaded): %s", abbrev(s))
				continue
			}
			return err
		}
	}
	if err := mark(ctx, c, l.res.LoadID, o.file.Name, stepDone, 0); err != nil {
		return err
	}
	l.countFile()
	return nil
}

func (l *loader) countTable(t *tableJob) {
	l.mu.Lock()
	if !t.counted {
		t.counted = true
		l.res.Tables++
	}
	l.mu.Unlock()
}

func (l *loader) countFile() {
	l.mu.Lock()
	l.res.Files++
	l.mu.Unlock()
}

// databases

func (l *loader) createDatabases(ctx context.Context, c *sql.Conn) error {
	names := make([]string, 0, len(l.databases))
	for s := range l.databases {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		o := l.databases[s]
		typ := ""
		if err := c.QueryRowContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", s).Scan(&typ); err == nil {
			continue // a schema that exists is fine
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("load: check schema %s: %w", QuoteIdent(s), err)
		}
		if o.create < 0 {
			if _, err := c.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+QuoteIdent(s)); err != nil {
				return fmt.Errorf("load: create schema %s: %w", QuoteIdent(s), err)
			}
			continue
		}
		if err := l.session(ctx, c); err != nil {
			return err
		}
		for i, stmt := range o.stmts {
			if i == o.create {
				stmt = stmt[:o.head.KindStart] + "DATABASE IF NOT EXISTS " + QuoteIdent(s) + stmt[o.head.NameEnd:]
			}
			if err := execStmt(ctx, c, o.file, stmt); err != nil {
				return err
			}
		}
		l.countFile()
	}
	return nil
}

// tables

func (l *loader) createTable(ctx context.Context, c *sql.Conn, t *tableJob) error {
	o := t.obj
	t.createdYet = l.done[progressKey{o.file.Name, stepCreate}]
	typ, err := l.tableType(ctx, c, t.dst[0], t.dst[1])
	if err != nil {
		return fmt.Errorf("load: check table %s: %w", QuoteName(t.dst[0], t.dst[1]), err)
	}
	if !(t.createdYet && typ != "") {
		t.createdYet = false
		if err := l.session(ctx, c); err != nil {
			return err
		}
		if typ != "" {
			// An earlier attempt's table half made, or Replace (preflight
			// refused it otherwise).
			if err := l.dropForReplace(ctx, c, t); err != nil {
				return err
			}
		}
		// Unqualified names in the definition (foreign keys) resolve in the
		// table's schema of the dump when the target has it.
		use := t.dst[0]
		if t.src[0] != t.dst[0] {
			var s string
			if c.QueryRowContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", t.src[0]).Scan(&s) == nil {
				use = t.src[0]
			}
		}
		if _, err := c.ExecContext(ctx, "USE "+QuoteIdent(use)); err != nil {
			return fmt.Errorf("load: use %s: %w", QuoteIdent(use), err)
		}
		// Marks of data an earlier attempt loaded into a table that is gone
		// (dropped since) are void.
		var void []string
		for _, f := range t.data {
			if l.done[progressKey{f.Name, stepData}] {
				void = append(void, f.Name)
				delete(l.done, progressKey{f.Name, stepData})
			}
		}
		if err := unmark(ctx, c, l.res.LoadID, void, stepData); err != nil {
			return err
		}
		delete(l.done, progressKey{o.file.Name, stepIndex})
		if err := unmark(ctx, c, l.res.LoadID, []string{o.file.Name}, stepIndex); err != nil {
			return err
		}
		if err := mark(ctx, c, l.res.LoadID, o.file.Name, stepCreate, 0); err != nil {
			return err
		}
		for i, stmt := range o.stmts {
			if i == o.create {
				stmt = stmt[:o.head.NameStart] + QuoteName(t.dst[0], t.dst[1]) + stmt[o.head.NameEnd:]
				if len(t.deferred) > 0 {
					if stmt, err = removeDeferredIndexes(stmt, t.deferred); err != nil {
						return fmt.Errorf("load %s: %w", o.file.Name, err)
					}
				}
			}
			if err := execStmt(ctx, c, o.file, stmt); err != nil {
				return err
			}
		}
		l.countFile()
		l.countTable(t)
	}
	// Is the engine transactional? Then a data file's rows commit with its
	// progress mark.
	var tx string
	err = c.QueryRowContext(ctx, `SELECT COALESCE(e.TRANSACTIONS, 'NO') FROM information_schema.TABLES t
		LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE
		WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ?`, t.dst[0], t.dst[1]).Scan(&tx)
	if err != nil {
		return fmt.Errorf("load: read the engine of %s: %w", QuoteName(t.dst[0], t.dst[1]), err)
	}
	t.tx = tx == "YES"
	return nil
}

// dropForReplace drops what has the table's target name, unless an earlier
// attempt of this load created it (and it is still there).
func (l *loader) dropForReplace(ctx context.Context, c *sql.Conn, t *tableJob) error {
	typ, err := l.tableType(ctx, c, t.dst[0], t.dst[1])
	if err != nil {
		return fmt.Errorf("load: check table %s: %w", QuoteName(t.dst[0], t.dst[1]), err)
	}
	if typ == "" || l.done[progressKey{t.obj.file.Name, stepCreate}] {
		return nil // nothing there, or ours from an earlier attempt: keep it and its data
	}
	drop := "DROP TABLE IF EXISTS "
	if typ == "VIEW" {
		drop = "DROP VIEW IF EXISTS "
	}
	if _, err := c.ExecContext(ctx, drop+QuoteName(t.dst[0], t.dst[1])); err != nil {
		return fmt.Errorf("load: replace %s: %w", QuoteName(t.dst[0], t.dst[1]), err)
	}
	return nil
}

// objects (sequences, views, routines, triggers, events)

// applyObject creates a schema object in its schema. An object an earlier
// attempt of this load created is dropped and created again.
func (l *loader) applyObject(ctx context.Context, c *sql.Conn, o *objectJob) error {
	if l.done[progressKey{o.file.Name, stepDone}] {
		return nil
	}
	ex, err := l.objectExists(ctx, c, o)
	if err != nil {
		return fmt.Errorf("load: check %s: %w", o.describe(), err)
	}
	if err := l.session(ctx, c); err != nil {
		return err
	}
	if ex {
		if _, err := c.ExecContext(ctx, o.dropStatement()); err != nil {
			return fmt.Errorf("load: replace %s: %w", o.describe(), err)
		}
	}
	if _, err := c.ExecContext(ctx, "USE "+QuoteIdent(o.schema)); err != nil {
		return fmt.Errorf("load: use %s: %w", QuoteIdent(o.schema), err)
	}
	if err := mark(ctx, c, l.res.LoadID, o.file.Name, stepCreate, 0); err != nil {
		return err
	}
	for _, stmt := range o.stmts {
		if err := execStmt(ctx, c, o.file, stmt); err != nil {
			return err
		}
	}
	if err := mark(ctx, c, l.res.LoadID, o.file.Name, stepDone, 0); err != nil {
		return err
	}
	l.countFile()
	return nil
}

// createViews creates the views in rounds: a view over a view that is not
// there yet fails and is tried again in the next round, until a round
// creates none.
func (l *loader) createViews(ctx context.Context, c *sql.Conn) error {
	pending := l.objects[KindView]
	if len(pending) > 0 && len(l.rename) > 0 {
		l.note("views are loaded as they were dumped: a view that names a renamed table still names its old name")
	}
	for len(pending) > 0 {
		var next []*objectJob
		var errs []error
		for _, o := range pending {
			if err := l.applyObject(ctx, c, o); err != nil {
				if ctx.Err() != nil {
					return err
				}
				next = append(next, o)
				errs = append(errs, err)
			}
		}
		if len(next) == len(pending) {
			return fmt.Errorf("load: %d views cannot be created: %w", len(next), errors.Join(errs...))
		}
		pending = next
	}
	return nil
}

// data

func (l *loader) loadData(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type task struct {
		t *tableJob
		f *File // nil: add the indexes only
	}
	var tasks []task
	var order []*tableJob
	c, err := l.conn(ctx)
	if err != nil {
		return fmt.Errorf("load: connect: %w", err)
	}
	for _, t := range l.tables {
		t.pending = nil
		for _, f := range t.data {
			if !l.done[progressKey{f.Name, stepData}] {
				t.pending = append(t.pending, f)
			}
		}
		keyless := len(t.data) > 0 && t.data[0].Range == nil
		if t.createdYet && !t.tx && keyless && len(t.pending) > 0 {
			// Rows of a non-transactional table without a key cannot be
			// told apart by file: load it whole again.
			if len(t.pending) < len(t.data) {
				var names []string
				for _, f := range t.data {
					names = append(names, f.Name)
				}
				if err := unmark(ctx, c, l.res.LoadID, names, stepData); err != nil {
					discardConn(c)
					return err
				}
			}
			if _, err := c.ExecContext(ctx, "TRUNCATE TABLE "+QuoteName(t.dst[0], t.dst[1])); err != nil {
				discardConn(c)
				return fmt.Errorf("load: truncate %s to load it again: %w", QuoteName(t.dst[0], t.dst[1]), err)
			}
			t.pending = append([]*File(nil), t.data...)
		}
		t.remaining = len(t.pending)
		if skipped := len(t.data) - len(t.pending); skipped > 0 {
			l.res.SkippedFiles += skipped
			var rows, size int64
			for _, f := range t.data {
				rows += f.Rows
				size += f.Size
			}
			for _, f := range t.pending {
				rows -= f.Rows
				size -= f.Size
			}
			l.mu.Lock()
			l.prog.FilesDone += skipped
			l.prog.RowsDone += rows
			l.prog.BytesDone += size
			l.mu.Unlock()
		}
		if len(t.pending) > 0 || len(t.deferred) > 0 && !l.done[progressKey{t.obj.file.Name, stepIndex}] {
			order = append(order, t)
		}
	}
	discardConn(c)
	sort.SliceStable(order, func(i, j int) bool { return order[i].bytes > order[j].bytes })
	for _, t := range order {
		if len(t.pending) == 0 {
			tasks = append([]task{{t: t}}, tasks...)
		}
	}
	for _, t := range order {
		for _, f := range t.pending {
			tasks = append(tasks, task{t: t, f: f})
		}
	}
	l.report("data", "", 0, 0, false)

	ch := make(chan task)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	for w := 0; w < l.opt.Parallelism && w < len(tasks); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tk := range ch {
				if ctx.Err() != nil {
					continue
				}
				if err := l.runTask(ctx, tk.t, tk.f); err != nil {
					fail(err)
				}
			}
		}()
	}
	for _, tk := range tasks {
		if ctx.Err() != nil {
			break
		}
		ch <- tk
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// runTask loads one data file (f) and, after the table's last file, adds
// its deferred indexes.
func (l *loader) runTask(ctx context.Context, t *tableJob, f *File) error {
	c, err := l.conn(ctx)
	if err != nil {
		return fmt.Errorf("load: connect: %w", err)
	}
	defer discardConn(c)
	last := true
	if f != nil {
		var rows int64
		for attempt := 1; ; attempt++ {
			rows, err = l.loadFile(ctx, c, t, f)
			if err == nil || !retryable(err) || attempt == maxAttempts {
				break
			}
			// MariaDB loads the first rows of an empty InnoDB table in bulk
			// under a table lock, so two connections that start on the
			// same empty table deadlock; the loser waits and tries again.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		if err != nil {
			return err
		}
		l.mu.Lock()
		l.res.Files++
		l.res.Rows += rows
		t.remaining--
		last = t.remaining == 0
		l.mu.Unlock()
		l.report("data", f.Name, rows, f.Size, true)
	}
	if last {
		l.countTable(t)
		return l.addIndexes(ctx, c, t)
	}
	return nil
}

// maxAttempts bounds the tries of a data file that meets deadlocks or lock
// wait timeouts.
const maxAttempts = 20

// retryable: a deadlock or a lock wait timeout, after which the file's
// transaction is rolled back and can run again.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// loadFile loads a data file in one transaction with its progress mark.
func (l *loader) loadFile(ctx context.Context, c *sql.Conn, t *tableJob, f *File) (rows int64, err error) {
	name := QuoteName(t.dst[0], t.dst[1])
	r, err := l.src.Open(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("load: open %s: %w", f.Name, err)
	}
	defer r.Close()
	// A transactional table's rows commit with the file's mark. A
	// non-transactional table's rows are written statement by statement
	// (MySQL's GTID consistency refuses to mix both engines in a
	// transaction), and its mark follows; a file without one is deleted
	// by range (or the table emptied) before it is loaded again.
	var e execer = c
	var tx *sql.Tx
	if t.tx {
		if tx, err = c.BeginTx(ctx, nil); err != nil {
			return 0, fmt.Errorf("load %s: begin: %w", f.Name, err)
		}
		e = tx
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if tx != nil {
			_ = tx.Rollback()
		}
		if !t.tx && ctx.Err() == nil {
			// A non-transactional engine kept what was inserted: take it
			// out again, so a failed file leaves nothing behind.
			l.cleanFailed(c, t, f)
		}
	}()
	if t.createdYet && !t.tx && f.Range != nil {
		// A crashed attempt may have left some of the range's rows.
		where, err := rangeWhere(t.meta.PrimaryKey, f.Range)
		if err != nil {
			return 0, fmt.Errorf("load %s: %w", f.Name, err)
		}
		q := "DELETE FROM " + name
		if where != "" {
			q += " WHERE " + where
		}
		if _, err := e.ExecContext(ctx, q); err != nil {
			return 0, fmt.Errorf("load %s: delete what an earlier attempt left of the range: %w", f.Name, err)
		}
	}
	prefix := loadInsertPrefix(t.src[1])
	newPrefix := []byte("INSERT INTO " + name + " (")
	br := bufio.NewReaderSize(r, 1<<20)
	var buf, stmt []byte
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br, buf, l.maxPacket)
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errLineTooLong) {
			return 0, fmt.Errorf("load %s: line %d is a statement longer than the target's max_allowed_packet (%d bytes): raise max_allowed_packet on the target", f.Name, lineNo, l.maxPacket)
		}
		if err != nil {
			return 0, fmt.Errorf("load %s: read: %w", f.Name, err)
		}
		buf = line
		if len(line) == 0 {
			continue
		}
		switch {
		case bytes.HasPrefix(line, prefix):
			stmt = append(append(stmt[:0], newPrefix...), line[len(prefix):]...)
		case isSessionStatement(line):
			stmt = append(stmt[:0], line...)
		default:
			return 0, fmt.Errorf("%w: %s line %d is neither a session statement nor an INSERT INTO %s", ErrCorrupt, f.Name, lineNo, QuoteIdent(t.src[1]))
		}
		if len(stmt)+1 > l.maxPacket {
			return 0, fmt.Errorf("load %s: the statement of line %d has %d bytes, more than the target's max_allowed_packet (%d): raise max_allowed_packet on the target", f.Name, lineNo, len(stmt), l.maxPacket)
		}
		res, err := e.ExecContext(ctx, string(stmt))
		if err != nil {
			return 0, fmt.Errorf("load %s line %d: %w", f.Name, lineNo, err)
		}
		if stmt[0] == 'I' {
			n, _ := res.RowsAffected()
			rows += n
		}
	}
	if rows != f.Rows {
		return 0, fmt.Errorf("%w: %s inserted %d rows, its index entry says %d", ErrCorrupt, f.Name, rows, f.Rows)
	}
	if err := mark(ctx, e, l.res.LoadID, f.Name, stepData, rows); err != nil {
		return 0, err
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return 0, fmt.Errorf("load %s: commit: %w", f.Name, err)
		}
	}
	committed = true
	return rows, nil
}

// cleanFailed removes the rows a failed file left in a non-transactional
// table: its range, or (no key) the whole table, whose files are then
// loaded again by the next attempt.
func (l *loader) cleanFailed(c *sql.Conn, t *tableJob, f *File) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := QuoteName(t.dst[0], t.dst[1])
	if f.Range == nil {
		var names []string
		for _, d := range t.data {
			names = append(names, d.Name)
		}
		if _, err := c.ExecContext(ctx, "TRUNCATE TABLE "+name); err == nil {
			_ = unmark(ctx, c, l.res.LoadID, names, stepData)
		}
		return
	}
	if where, err := rangeWhere(t.meta.PrimaryKey, f.Range); err == nil {
		q := "DELETE FROM " + name
		if where != "" {
			q += " WHERE " + where
		}
		_, _ = c.ExecContext(ctx, q)
	}
}

// addIndexes adds the deferred indexes that the table does not have yet.
func (l *loader) addIndexes(ctx context.Context, c *sql.Conn, t *tableJob) error {
	if len(t.deferred) == 0 || l.done[progressKey{t.obj.file.Name, stepIndex}] {
		return nil
	}
	start := time.Now()
	if err := l.session(ctx, c); err != nil {
		return err
	}
	name := QuoteName(t.dst[0], t.dst[1])
	have := map[string]bool{}
	rows, err := c.QueryContext(ctx, "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", t.dst[0], t.dst[1])
	if err != nil {
		return fmt.Errorf("load: read the indexes of %s: %w", name, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		have[n] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var plain []string
	var alters []string
	for _, d := range t.deferred {
		if n := indexName(d); n != "" && have[n] {
			continue // added by an earlier attempt
		}
		if isFulltext(d) {
			alters = append(alters, "ALTER TABLE "+name+" ADD "+d)
		} else {
			plain = append(plain, "ADD "+d)
		}
	}
	if len(plain) > 0 {
		alters = append([]string{"ALTER TABLE " + name + " " + strings.Join(plain, ", ")}, alters...)
	}
	for _, a := range alters {
		if _, err := c.ExecContext(ctx, a); err != nil {
			return fmt.Errorf("load %s: add the deferred indexes: %w (statement: %s)", t.obj.file.Name, err, abbrev(a))
		}
	}
	if err := mark(ctx, c, l.res.LoadID, t.obj.file.Name, stepIndex, 0); err != nil {
		return err
	}
	l.mu.Lock()
	l.res.IndexTime += time.Since(start)
	l.mu.Unlock()
	return nil
}
