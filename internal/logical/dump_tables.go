package logical

import (
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"strings"
	"sync"
)

// How a table's rows are cut into data files.
const (
	modeWhole = iota // no usable key: one worker reads the table, files cut by size, Range nil
	modeInt          // one integer key column: ranges of key values, no query needed to find them
	modeWalk         // any other key: each range's upper bound is found by walking the key
)

// job is one table's dump: it hands out key ranges (tasks) to workers in
// key order, so that all workers can share a big table, and numbers the
// data files in key order.
type job struct {
	t        *tableInfo
	file     *File // the table file, whose TableMeta is completed at the end
	fileSize int64

	mu          sync.Mutex
	started     bool
	exhausted   bool
	mode        int
	nextPart    int
	bytesPerRow float64
	// modeInt: the next range starts above cur (nil: at the start).
	cur, max, cur0 *big.Int
	// modeWalk: the next range starts above lower (nil: at the start).
	lower [][]byte

	// Results, under mu.
	files       []*File
	rows        int64
	outstanding int
	finished    bool
}

func newJob(t *tableInfo, f *File, fileSize int64) *job {
	bpr := float64(t.AvgRowLen)
	if bpr < 16 {
		bpr = 100
	}
	return &job{t: t, file: f, fileSize: fileSize, bytesPerRow: bpr}
}

// task is one range of one table: Lower < key <= Upper (nil: unbounded).
// A whole-table task has no key and writes as many files as it needs.
type task struct {
	j            *job
	part         int
	whole        bool
	lower, upper [][]byte
}

// rowsPerChunk is how many rows make about fileSize bytes, by what the
// table's earlier files show (or its statistics before the first).
func (j *job) rowsPerChunk() int64 {
	n := int64(float64(j.fileSize) / j.bytesPerRow)
	if n < 1 {
		n = 1
	}
	return n
}

// take hands out the next task of the job, or nil when every range has
// been handed out. It runs the queries that find the range on conn (a
// worker's snapshot connection), under the job's lock.
func (j *job) take(ctx context.Context, conn *sql.Conn) (*task, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.exhausted {
		return nil, nil
	}
	if !j.started {
		j.started = true
		if err := j.plan(ctx, conn); err != nil {
			return nil, err
		}
	}
	t := &task{j: j, part: j.nextPart}
	switch j.mode {
	case modeWhole:
		t.whole = true
		j.exhausted = true
		j.outstanding++
		return t, nil // parts are numbered by the task as it writes
	case modeInt:
		step := big.NewInt(j.rowsPerChunk())
		upper := new(big.Int)
		if j.cur == nil {
			upper.Sub(j.min(), big.NewInt(1))
		} else {
			upper.Set(j.cur)
			t.lower = [][]byte{[]byte(j.cur.String())}
		}
		upper.Add(upper, step)
		if upper.Cmp(j.max) >= 0 {
			j.exhausted = true
		} else {
			t.upper = [][]byte{[]byte(upper.String())}
			j.cur = upper
		}
	case modeWalk:
		t.lower = j.lower
		up, err := j.walk(ctx, conn, j.lower, j.rowsPerChunk())
		if err != nil {
			return nil, tableError(j.t, err)
		}
		if up == nil {
			j.exhausted = true
		} else {
			t.upper = up
			j.lower = up
		}
	}
	j.nextPart++
	j.outstanding++
	return t, nil
}

// minVal is the smallest key value, kept by plan for the first range.
func (j *job) min() *big.Int { return j.cur0 }

// plan chooses how to cut the table.
func (j *job) plan(ctx context.Context, conn *sql.Conn) error {
	if len(j.t.Key) == 0 {
		j.mode = modeWhole
		return nil
	}
	j.mode = modeWalk
	if len(j.t.Key) != 1 || !isIntType(j.t.Key[0].DataType) {
		return nil
	}
	k := QuoteIdent(j.t.Key[0].Name)
	var lo, hi sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT MIN("+k+"), MAX("+k+") FROM "+QuoteName(j.t.Schema, j.t.Name)).
		Scan(&lo, &hi); err != nil {
		return tableError(j.t, err)
	}
	if !lo.Valid || !hi.Valid {
		return nil // empty: one walk finds nothing, one file
	}
	mn, ok1 := new(big.Int).SetString(lo.String, 10)
	mx, ok2 := new(big.Int).SetString(hi.String, 10)
	if !ok1 || !ok2 {
		return fmt.Errorf("table %s: key range %q..%q is not integer", QuoteName(j.t.Schema, j.t.Name), lo.String, hi.String)
	}
	// Ranges of values as wide as a file's rows hold at most that many
	// rows (the key is unique), so files never grow beyond their target.
	// Sparse keys would give many near-empty ranges: walk those instead.
	span := new(big.Int).Sub(mx, mn)
	span.Add(span, big.NewInt(1))
	est := j.t.EstRows
	if est < 1 {
		est = 1
	}
	if span.Cmp(new(big.Int).Mul(big.NewInt(est), big.NewInt(4))) > 0 {
		return nil
	}
	j.mode = modeInt
	j.cur0, j.max = mn, mx
	return nil
}

func isIntType(dt string) bool {
	switch dt {
	case "tinyint", "smallint", "mediumint", "int", "bigint":
		return true
	}
	return false
}

// walk returns the key of the n-th row above lower (nil: fewer rows are
// left, the range is the last one).
func (j *job) walk(ctx context.Context, conn *sql.Conn, lower [][]byte, n int64) ([][]byte, error) {
	t := j.t
	var sb strings.Builder
	sb.WriteString("SELECT ")
	for i, c := range t.Key {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(c.selectExpr())
	}
	sb.WriteString(" FROM ")
	sb.WriteString(QuoteName(t.Schema, t.Name))
	if lower != nil {
		sb.WriteString(" WHERE ")
		sb.WriteString(rangeCond(t.Key, lower, false))
	}
	sb.WriteString(" ORDER BY ")
	sb.WriteString(keyList(t.Key))
	fmt.Fprintf(&sb, " LIMIT 1 OFFSET %d", n-1)
	rows, err := conn.QueryContext(ctx, sb.String())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	raw := make([]rawValue, len(t.Key))
	if err := scanRaw(rows, raw, make([]any, len(raw))); err != nil {
		return nil, err
	}
	out := make([][]byte, len(raw))
	for i := range raw {
		out[i] = append([]byte{}, raw[i].value()...)
	}
	return out, closeRows(rows)
}

func keyList(key []column) string {
	names := make([]string, len(key))
	for i, c := range key {
		names[i] = QuoteIdent(c.Name)
	}
	return strings.Join(names, ",")
}

// rangeCond is "key > v" (upper false) or "key <= v" (upper true) for a
// tuple of key columns, written out as ORs of column comparisons, which
// both servers turn into index ranges.
func rangeCond(key []column, v [][]byte, upper bool) string {
	var ors []string
	for i := range key {
		var ands []string
		for k := 0; k < i; k++ {
			ands = append(ands, QuoteIdent(key[k].Name)+" = "+string(appendBound(nil, key[k], v[k])))
		}
		op := " > "
		if upper {
			op = " < "
			if i == len(key)-1 {
				op = " <= "
			}
		}
		ands = append(ands, QuoteIdent(key[i].Name)+op+string(appendBound(nil, key[i], v[i])))
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")"
}

func boundLiterals(key []column, v [][]byte) []string {
	if v == nil {
		return nil
	}
	out := make([]string, len(v))
	for i := range v {
		out[i] = string(appendBound(nil, key[i], v[i]))
	}
	return out
}

// scheduler hands out tasks: first of the tables outside the InnoDB
// snapshot (dumped while the lock is held), then of the others, biggest
// first so that the last tables to finish are small.
type scheduler struct {
	mu         sync.Mutex
	jobs       []*job
	locked     int // tables outside the snapshot not yet finished
	lockedDone chan struct{}
}

func newScheduler(jobs []*job) *scheduler {
	s := &scheduler{lockedDone: make(chan struct{})}
	var locked, rest []*job
	for _, j := range jobs {
		if j.t.Transactional {
			rest = append(rest, j)
		} else {
			locked = append(locked, j)
		}
	}
	sortJobs(rest)
	s.jobs = append(locked, rest...)
	s.locked = len(locked)
	if s.locked == 0 {
		close(s.lockedDone)
	}
	return s
}

func sortJobs(js []*job) {
	size := func(j *job) int64 { return j.t.EstRows * (j.t.AvgRowLen + 1) }
	for i := 1; i < len(js); i++ {
		for k := i; k > 0 && size(js[k]) > size(js[k-1]); k-- {
			js[k], js[k-1] = js[k-1], js[k]
		}
	}
}

// next returns a task, or nil when every table has been handed out.
func (s *scheduler) next(ctx context.Context, conn *sql.Conn) (*task, error) {
	for {
		s.mu.Lock()
		var j *job
		for len(s.jobs) > 0 {
			j = s.jobs[0]
			j.mu.Lock()
			ex := j.exhausted
			j.mu.Unlock()
			if !ex {
				break
			}
			s.jobs = s.jobs[1:]
			j = nil
		}
		s.mu.Unlock()
		if j == nil {
			return nil, nil
		}
		t, err := j.take(ctx, conn)
		if err != nil || t != nil {
			return t, err
		}
	}
}

// done records a finished task; when it was the job's last, the job is
// finished (and, for a table outside the snapshot, maybe the lock may go).
func (s *scheduler) done(t *task, files []*File, rows, bytes int64) (finished bool) {
	j := t.j
	j.mu.Lock()
	j.files = append(j.files, files...)
	j.rows += rows
	if rows > 0 {
		// Follow what the table's rows really cost, for the next ranges.
		j.bytesPerRow = float64(bytes) / float64(rows)
	}
	j.outstanding--
	finished = j.exhausted && j.outstanding == 0 && !j.finished
	if finished {
		j.finished = true
	}
	j.mu.Unlock()
	if finished && !j.t.Transactional {
		s.mu.Lock()
		s.locked--
		if s.locked == 0 {
			close(s.lockedDone)
		}
		s.mu.Unlock()
	}
	return finished
}

// worker is one worker connection's state: two file buffers, one being
// filled while the other is with the sink, so reading rows and storing
// files overlap (at most one Put in flight per worker).
type worker struct {
	d         *dumper
	cur, next *dataFile
	fl        *flight
}

// flight is a Put running in the background, and what to do when it has
// succeeded (account for the task whose last file it is).
type flight struct {
	err   chan error
	after []func()
}

// wait waits for the Put in flight, if any.
func (w *worker) wait() error {
	if w.fl == nil {
		return nil
	}
	err := <-w.fl.err
	after := w.fl.after
	w.fl = nil
	if err != nil {
		return err
	}
	for _, fn := range after {
		fn()
	}
	return nil
}

// emit hands the current buffer, as file f, to the sink in the
// background and returns the buffer to fill next (the previous one, whose
// Put has returned).
func (w *worker) emit(ctx context.Context, f *File) (*dataFile, error) {
	b := w.cur.bytes()
	if err := w.wait(); err != nil {
		return nil, err
	}
	fl := &flight{err: make(chan error, 1)}
	go func() { fl.err <- w.d.put(ctx, f, b) }()
	w.fl = fl
	w.cur, w.next = w.next, w.cur
	return w.cur, nil
}

// work runs tasks on one worker connection until none are left.
func (d *dumper) work(ctx context.Context, conn *sql.Conn, s *scheduler) (err error) {
	w := &worker{d: d}
	for _, df := range []**dataFile{&w.cur, &w.next} {
		*df = newDataFile(nil, nil, d.opt.StatementSize)
		(*df).buf.Grow(int(d.opt.FileSize) + d.opt.StatementSize)
	}
	defer func() {
		if werr := w.wait(); err == nil {
			err = werr
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		t, err := s.next(ctx, conn)
		if err != nil {
			return err
		}
		if t == nil {
			return nil
		}
		files, rows, bytes, err := d.dumpTask(ctx, conn, t, w)
		if err != nil {
			return tableError(t.j.t, err)
		}
		done := func() {
			if s.done(t, files, rows, bytes) {
				d.tableDone()
			}
		}
		if w.fl != nil {
			w.fl.after = append(w.fl.after, done) // once its last file is stored
		} else {
			done()
		}
		if !t.j.t.Transactional {
			// The lock waits for this table: do not make it wait for the
			// next file too.
			if err := w.wait(); err != nil {
				return err
			}
		}
	}
}

// dumpTask streams one range (or a whole table) into data files.
func (d *dumper) dumpTask(ctx context.Context, conn *sql.Conn, t *task, w *worker) (files []*File, rows, bytes int64, err error) {
	tb := t.j.t
	var sb strings.Builder
	sb.WriteString("SELECT ")
	for i, c := range tb.Columns {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(c.selectExpr())
	}
	sb.WriteString(" FROM ")
	sb.WriteString(QuoteName(tb.Schema, tb.Name))
	if tb.Versioned {
		sb.WriteString(" FOR SYSTEM_TIME ALL")
	}
	var conds []string
	if t.lower != nil {
		conds = append(conds, rangeCond(tb.Key, t.lower, false))
	}
	if t.upper != nil {
		conds = append(conds, rangeCond(tb.Key, t.upper, true))
	}
	if len(conds) > 0 {
		sb.WriteString(" WHERE ")
		sb.WriteString(strings.Join(conds, " AND "))
	}
	if len(tb.Key) > 0 {
		sb.WriteString(" ORDER BY ")
		sb.WriteString(keyList(tb.Key))
	}
	q, err := conn.QueryContext(ctx, sb.String())
	if err != nil {
		return nil, 0, 0, err
	}
	defer q.Close()

	prefix := insertPrefix(tb.Name, tb.Columns)
	df := w.cur
	df.reuse(dataHeader(tb.Versioned), prefix)
	raw := make([]rawValue, len(tb.Columns))
	ptrs := make([]any, len(raw))
	vals := make([][]byte, len(raw))
	part := t.part
	flush := func() error {
		f := &File{Name: fmt.Sprintf("%s/%s.%05d.sql", EncodeName(tb.Schema), EncodeName(tb.Name), part),
			Kind: KindData, Schema: tb.Schema, Object: tb.Name, Part: part, Rows: df.rows}
		if !t.whole {
			f.Range = &Range{Lower: boundLiterals(tb.Key, t.lower), Upper: boundLiterals(tb.Key, t.upper)}
		}
		rows += df.rows
		bytes += int64(len(df.bytes()))
		next, err := w.emit(ctx, f)
		if err != nil {
			return err
		}
		files = append(files, f) // complete (Offset set) once its Put is done
		part++
		df = next
		df.reuse(dataHeader(tb.Versioned), prefix)
		return nil
	}
	for q.Next() {
		if err := scanRaw(q, raw, ptrs); err != nil {
			return nil, 0, 0, err
		}
		for i := range raw {
			vals[i] = raw[i].value()
		}
		df.add(tb.Columns, vals)
		if t.whole && int64(df.size()) >= d.opt.FileSize {
			if err := flush(); err != nil {
				return nil, 0, 0, err
			}
		}
	}
	if err := closeRows(q); err != nil {
		return nil, 0, 0, err
	}
	if !t.whole || df.rows > 0 || len(files) == 0 {
		if err := flush(); err != nil {
			return nil, 0, 0, err
		}
	}
	return files, rows, bytes, nil
}
