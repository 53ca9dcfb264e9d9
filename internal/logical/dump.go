package logical

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"database/sql"

	"github.com/go-sql-driver/mysql"

	"github.com/strata-backup/strata/internal/flavor"
)

// Defaults of DumpOptions.
const (
	DefaultDumpParallelism = 2
	DefaultFileSize        = 32 << 20
	DefaultStatementSize   = 1 << 20
	DefaultLockWaitTimeout = 30 * time.Second
)

// DumpOptions configures Dump.
type DumpOptions struct {
	// Parallelism is the number of worker connections, each in the shared
	// snapshot (default 2). Dump uses one more connection, which holds the
	// lock and reads the schema.
	Parallelism int
	// FileSize is the target raw size of a data file (default 32 MiB); a
	// data file always ends at a row boundary.
	FileSize int64
	// StatementSize is the most bytes an INSERT statement has (default
	// 1 MiB), unless a single row is larger.
	StatementSize int
	// Include and Exclude select tables and views by "schema.table"
	// patterns; see MatchFilter.
	Include, Exclude []string
	// LockWaitTimeout bounds the wait for FLUSH TABLES WITH READ LOCK
	// (default 30 s).
	LockWaitTimeout time.Duration
	// Progress, if set, is called after each file is stored, never
	// concurrently.
	Progress func(DumpProgress)
}

// DumpProgress is how far a dump has come.
type DumpProgress struct {
	Files      int
	Rows       int64
	Bytes      int64
	Tables     int // tables to dump
	TablesDone int
}

// DumpResult describes a finished dump.
type DumpResult struct {
	Index  Index
	Flavor flavor.Flavor
	// BinlogFile and BinlogPos are the binary log position of the
	// consistent point (empty when binary logging is off).
	BinlogFile string
	BinlogPos  uint64
	// GTIDSet is the GTID state of the consistent point: MariaDB's
	// @@gtid_binlog_pos, MySQL's @@gtid_executed.
	GTIDSet string
	// ConsistentAt is the server's clock (UTC) while the lock was held:
	// the time of the consistent point, on the clock binlog events use.
	ConsistentAt time.Time
	// LockDuration is how long commits were blocked: from sending FLUSH
	// TABLES WITH READ LOCK (writes wait from then on, also while it waits
	// for running statements) to UNLOCK TABLES, which comes after the
	// tables outside the InnoDB snapshot are dumped.
	LockDuration time.Duration
	// Rows is the number of rows dumped, Bytes the size of all files.
	Rows, Bytes int64
}

// Dump writes a consistent logical dump of the server to sink. See
// docs/logical.md for the files it writes and how consistency is reached.
func Dump(ctx context.Context, db *sql.DB, sink Sink, opt DumpOptions) (*DumpResult, error) {
	if opt.Parallelism <= 0 {
		opt.Parallelism = DefaultDumpParallelism
	}
	if opt.FileSize <= 0 {
		opt.FileSize = DefaultFileSize
	}
	if opt.StatementSize <= 0 {
		opt.StatementSize = DefaultStatementSize
	}
	if opt.LockWaitTimeout <= 0 {
		opt.LockWaitTimeout = DefaultLockWaitTimeout
	}
	if _, err := parseFilter(opt.Include, opt.Exclude); err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	if max := db.Stats().MaxOpenConnections; max > 0 && max < opt.Parallelism+1 {
		return nil, fmt.Errorf("dump: the connection pool allows %d connections; a dump with parallelism %d needs %d",
			max, opt.Parallelism, opt.Parallelism+1)
	}
	var version, comment string
	if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@version_comment").Scan(&version, &comment); err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	fl := flavor.Detect(version, comment)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &dumper{sink: sink, opt: opt, fl: fl, cancel: cancel}
	var cat *catalog
	var seqs []pendingFile
	snap, err := takeSnapshot(ctx, db, fl, opt.Parallelism, opt.LockWaitTimeout, func(coord *sql.Conn) error {
		// Table statistics only size the first range of a table and order
		// the tables; MySQL's cached ones (information_schema_stats_expiry)
		// are good enough and cost no lock time.
		var err error
		if cat, err = readCatalog(ctx, coord, fl, &opt); err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		for _, s := range cat.Sequences {
			f, b, err := sequenceFile(ctx, coord, s)
			if err != nil {
				return fmt.Errorf("dump: %w", err)
			}
			seqs = append(seqs, pendingFile{f, b})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer snap.close()
	res := &DumpResult{Flavor: fl, BinlogFile: snap.binlogFile, BinlogPos: snap.binlogPos, GTIDSet: snap.gtidSet,
		ConsistentAt: snap.serverTime}
	d.progress.Tables = len(cat.Tables)

	// The table files first: their metadata is filled in as data is dumped.
	jobs := make([]*job, 0, len(cat.Tables))
	for _, t := range cat.Tables {
		f, b, err := tableFile(t)
		if err != nil {
			return nil, fmt.Errorf("dump: table %s: %w", QuoteName(t.Schema, t.Name), err)
		}
		if err := d.put(ctx, f, b); err != nil {
			return nil, err
		}
		if noDataEngines[strings.ToUpper(t.Engine)] {
			d.tableDone() // its rows live elsewhere (or nowhere): definition only
			continue
		}
		jobs = append(jobs, newJob(t, f, opt.FileSize))
	}
	for _, s := range seqs {
		if err := d.put(ctx, s.f, s.b); err != nil {
			return nil, err
		}
	}
	sch := newScheduler(jobs)

	var wg sync.WaitGroup
	for i, c := range snap.workers {
		wg.Add(1)
		go func(i int, c *sql.Conn) {
			defer wg.Done()
			if err := d.work(ctx, c, sch); err != nil {
				d.fail(fmt.Errorf("dump: worker %d: %w", i, err))
			}
		}(i, c)
	}
	// The coordinator releases the lock once the tables outside the
	// snapshot are dumped, then writes the other schema objects.
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-sch.lockedDone:
		case <-ctx.Done():
			return
		}
		if err := snap.unlock(ctx); err != nil {
			d.fail(err)
			return
		}
		if err := d.objects(ctx, snap.coord, cat); err != nil {
			d.fail(err)
		}
	}()
	wg.Wait()
	if d.err != nil {
		return nil, d.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.LockDuration = snap.lockDur
	if err := checkUnchanged(ctx, snap.coord, cat.Tables); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		j.file.Table.Parts = len(j.files)
		j.file.Table.Rows = j.rows
	}
	res.Index = d.index()
	res.Rows, res.Bytes = d.progress.Rows, d.progress.Bytes
	return res, nil
}

// noDataEngines hold no rows of their own: a dump writes their definition
// only (as mysqldump does).
var noDataEngines = map[string]bool{"MRG_MYISAM": true, "FEDERATED": true, "BLACKHOLE": true, "CONNECT": true, "SPIDER": true}

type pendingFile struct {
	f *File
	b []byte
}

// dumper is the state one Dump shares among its goroutines.
type dumper struct {
	sink   Sink
	opt    DumpOptions
	fl     flavor.Flavor
	cancel context.CancelFunc

	mu       sync.Mutex
	err      error
	files    []*File
	views    map[*File]string
	progress DumpProgress
}

func (d *dumper) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
	d.cancel()
}

// put checksums a file, hands it to the sink and records it.
func (d *dumper) put(ctx context.Context, f *File, data []byte) error {
	sum := sha256.Sum256(data)
	f.Size = int64(len(data))
	f.SHA256 = hex.EncodeToString(sum[:])
	if err := d.sink.Put(ctx, f, data); err != nil {
		return fmt.Errorf("dump: store %s: %w", f.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files = append(d.files, f)
	d.progress.Files++
	d.progress.Bytes += f.Size
	if f.Kind == KindData {
		d.progress.Rows += f.Rows
	}
	if d.opt.Progress != nil {
		d.opt.Progress(d.progress)
	}
	return nil
}

func (d *dumper) tableDone() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.progress.TablesDone++
	if d.opt.Progress != nil {
		d.opt.Progress(d.progress)
	}
}

// objects writes users, databases, views, routines, triggers and events,
// read on the coordinator connection after the lock is released.
func (d *dumper) objects(ctx context.Context, conn *sql.Conn, cat *catalog) error {
	users, err := usersFiles(ctx, conn, d.fl)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	for _, u := range users {
		if err := d.put(ctx, u.f, u.b); err != nil {
			return err
		}
	}
	for _, s := range cat.Schemas {
		f, b, err := databaseFile(ctx, conn, s)
		if err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		if err := d.put(ctx, f, b); err != nil {
			return err
		}
	}
	views := map[*File]string{}
	for _, v := range cat.Views {
		f, b, err := viewFile(ctx, conn, v)
		if err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		views[f] = string(b)
		if err := d.put(ctx, f, b); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.views = views
	d.mu.Unlock()
	type reader func(context.Context, *sql.Conn, objectRef) (*File, []byte, error)
	for _, part := range []struct {
		refs []objectRef
		read reader
	}{{cat.Routines, routineFile}, {cat.Triggers, triggerFile}, {cat.Events, eventFile}} {
		for _, r := range part.refs {
			f, b, err := part.read(ctx, conn, r)
			if err != nil {
				return fmt.Errorf("dump: %w", err)
			}
			if err := d.put(ctx, f, b); err != nil {
				return err
			}
		}
	}
	return nil
}

var kindOrder = map[Kind]int{KindUsers: 0, KindDatabase: 1, KindTable: 2, KindSequence: 3, KindData: 4,
	KindView: 5, KindRoutine: 6, KindTrigger: 7, KindEvent: 8, KindGrants: 9}

// index lists the files in the order a load applies them: by kind, then
// schema and object (data by part, views in dependency order, triggers in
// the order they fire).
func (d *dumper) index() Index {
	files := append([]*File{}, d.files...)
	pos := map[*File]int{}
	for i, f := range files {
		pos[f] = i
	}
	var views []*File
	for _, f := range files {
		if f.Kind == KindView {
			views = append(views, f)
		}
	}
	for i, f := range orderViews(views, d.views) {
		pos[f] = i
	}
	sort.SliceStable(files, func(i, j int) bool {
		a, b := files[i], files[j]
		if a.Kind != b.Kind {
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		switch a.Kind {
		case KindView, KindTrigger:
			return pos[a] < pos[b] // dependency order; trigger order as listed
		case KindData:
			if a.Schema != b.Schema || a.Object != b.Object {
				break
			}
			return a.Part < b.Part
		}
		if a.Schema != b.Schema {
			return a.Schema < b.Schema
		}
		return a.Name < b.Name
	})
	idx := Index{Format: FormatVersion, Files: make([]File, len(files))}
	for i, f := range files {
		idx.Files[i] = *f
	}
	return idx
}

var autoIncClause = regexp.MustCompile(` AUTO_INCREMENT=[0-9]+`)

// checkUnchanged compares every table's definition now with the one read
// under the lock: a DDL during the dump makes the dump fail instead of
// giving data that does not match its CREATE TABLE.
func checkUnchanged(ctx context.Context, conn *sql.Conn, tables []*tableInfo) error {
	for _, t := range tables {
		def, err := showCreate(ctx, conn, "SHOW CREATE TABLE "+QuoteName(t.Schema, t.Name), 1)
		if err != nil {
			return fmt.Errorf("dump: table %s changed during the dump (DDL; retry the dump): %w", QuoteName(t.Schema, t.Name), err)
		}
		if autoIncClause.ReplaceAllString(def, "") != autoIncClause.ReplaceAllString(t.Create, "") {
			return fmt.Errorf("dump: table %s was altered during the dump (DDL after the consistent point); retry the dump", QuoteName(t.Schema, t.Name))
		}
	}
	return nil
}

// tableError turns errors of reading a table into ones that say what
// happened.
func tableError(t *tableInfo, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1412: // ER_TABLE_DEF_CHANGED
			return fmt.Errorf("table %s was altered during the dump (DDL after the consistent point); retry the dump: %w", QuoteName(t.Schema, t.Name), err)
		case 1146: // ER_NO_SUCH_TABLE
			return fmt.Errorf("table %s was dropped or renamed during the dump; retry the dump: %w", QuoteName(t.Schema, t.Name), err)
		}
	}
	return fmt.Errorf("table %s: %w", QuoteName(t.Schema, t.Name), err)
}
