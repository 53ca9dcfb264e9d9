package binlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	fl "github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/storage/counting"
)

// Source is the server to archive from and how to log in as a replica.
type Source struct {
	Host     string
	Port     uint16
	User     string
	Password string
	Flavor   string // mariadb | mysql, as detected from the server (flavor.Name)
	// ReplicaID is the server_id the archiver registers with; it must differ
	// from every real server and replica.
	ReplicaID uint32
}

// Options tune the archiver.
type Options struct {
	// FlushInterval is the longest an event waits before its segment is
	// written: the RPO. Default 1s.
	FlushInterval time.Duration
	// MaxSegmentBytes closes a segment early. Default 8 MiB.
	MaxSegmentBytes int
	// RunFor ends the run (after a flush) when this much time has passed;
	// 0 runs until ctx ends.
	RunFor time.Duration
	// Progress is called after every segment written and every second.
	Progress func(Status)
	// Log receives the archiver's events (optional).
	Log func(msg string, kv ...any)
	// NoRollUp leaves closed binlog files as individual index records
	// (Store.RollUp is not run in the background), and so uncompacted.
	NoRollUp bool
	// NoCompact leaves the data objects of rolled-up files as they are
	// (Store.Compact is not run in the background).
	NoCompact bool
}

// orphanSweepEvery is how often each older page of data objects is swept
// for orphans (Store.SweepOrphanPage): one page per run start, the page
// chosen by the time in steps of this.
const orphanSweepEvery = 10 * time.Minute

// roller rolls up the index of closed binlog files in the background of a
// run (Store.RollUp), then compacts their data objects into packs
// (Store.Compact), so that the stream never waits for either: at the run's
// start and after every segment that ends a file. A failed roll-up or
// compaction is logged and done again at the next trigger; a crash in one
// leaves nothing a reader miscounts or misses (see RollUp, Compact).
type roller struct {
	st      *Store
	logf    func(string, ...any)
	kick    chan struct{}
	done    chan struct{}
	cancel  context.CancelFunc // of the compaction, at stop
	compact bool
}

func startRoller(ctx context.Context, st *Store, compact bool, logf func(string, ...any)) *roller {
	cctx, cancel := context.WithCancel(ctx)
	r := &roller{st: st, logf: logf, kick: make(chan struct{}, 1), done: make(chan struct{}), cancel: cancel, compact: compact}
	go func() {
		defer close(r.done)
		for range r.kick {
			if ctx.Err() != nil {
				continue
			}
			ix, err := st.ReadTail(ctx)
			n := 0
			if err == nil {
				n, err = st.RollUp(ctx, ix)
			}
			switch {
			case err != nil && ctx.Err() == nil:
				r.logf("binlog index roll-up failed (done again after the next file)", "error", err.Error())
				continue
			case n > 0:
				r.logf("binlog index rolled up", "rollups", n)
			}
			if err != nil || !r.compact || cctx.Err() != nil {
				continue
			}
			// A compaction of an archive of many files (one from before
			// compaction existed) goes on for as long as the run; stop
			// cancels it, and the next run goes on from where it stopped.
			n, err = st.Compact(cctx, ix)
			switch {
			case err != nil && cctx.Err() == nil:
				r.logf("binlog archive compaction failed (done again after the next file)", "error", err.Error())
			case n > 0:
				r.logf("binlog segments compacted", "packs", n)
			}
		}
	}()
	return r
}

// trigger asks for a roll-up (one pending at most).
func (r *roller) trigger() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// stop cancels the compaction under way, if any, and waits for the
// roll-up under way, if any.
func (r *roller) stop() {
	r.cancel()
	close(r.kick)
	<-r.done
}

// Status is the archiver's progress.
type Status struct {
	File          string    `json:"file"`
	Pos           uint32    `json:"pos"`
	LastEventTime time.Time `json:"last_event_time"`
	LastGTID      string    `json:"last_gtid,omitempty"`
	LastSeq       uint64    `json:"last_seq"`
	Segments      int       `json:"segments"` // written in this run
	Bytes         int64     `json:"bytes"`
	// CaughtUp is true when the server had nothing more to send at the last check.
	CaughtUp bool `json:"caught_up"`
	// Lag percentiles (milliseconds) from receiving an event to its segment
	// being durable, over the last events of this run.
	LagP50Ms  float64 `json:"lag_p50_ms"`
	LagP99Ms  float64 `json:"lag_p99_ms"`
	LagMaxMs  float64 `json:"lag_max_ms"`
	GapsFound int     `json:"gaps_found"`
	// Pending is how many received events are not yet durable.
	Pending int `json:"pending"`
	// PendingSince is when the oldest of them was received (zero when
	// none is pending).
	PendingSince time.Time `json:"pending_since,omitzero"`
	// DurableAt is when the segment holding LastEventTime's event became
	// durable in the repository: DurableAt - LastEventTime is the commit to
	// durable lag of the newest archived event.
	DurableAt time.Time `json:"durable_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
	// The storage requests of this run, counted as the archiver makes them
	// (every request of its Store, roll-ups included): Writes are object
	// writes (data, records, roll-ups, packs, gaps, keys) and ListPages listing
	// requests (a page per 1,000 keys), both GCS class A operations; Reads
	// are GETs and stats (class B); Deletes (free on GCS).
	Writes    int `json:"writes"`
	ListPages int `json:"list_pages"`
	Reads     int `json:"reads"`
	Deletes   int `json:"deletes"`
	// WritesPerHour is Writes over this run's time so far (at least a
	// minute), per hour.
	WritesPerHour float64 `json:"writes_per_hour"`
}

// ServerInfo is what the archiver needs from the server before it streams.
type ServerInfo struct {
	Identity string
	Checksum bool
	Logs     []LogFile
	// Purged is MySQL's @@gtid_purged: the transactions whose binlogs
	// the server no longer has.
	Purged gtid.Set
}

// LogFile is one row of SHOW BINARY LOGS.
type LogFile struct {
	Name string
	Size uint64
}

// Inspect reads the server's identity, checksum setting and binlog files.
func Inspect(ctx context.Context, db *sql.DB, flavor string) (*ServerInfo, error) {
	si := &ServerInfo{}
	var serverID uint32
	if err := db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&serverID); err != nil {
		return nil, fmt.Errorf("read server_id: %w", err)
	}
	if flavor == string(fl.MySQL) {
		var uuid string
		if err := db.QueryRowContext(ctx, "SELECT @@server_uuid").Scan(&uuid); err != nil {
			return nil, fmt.Errorf("read server_uuid: %w", err)
		}
		si.Identity = "uuid:" + uuid
		var purged string
		if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_purged").Scan(&purged); err != nil {
			return nil, fmt.Errorf("read gtid_purged: %w", err)
		}
		p, err := gtid.Parse(fl.MySQL, purged)
		if err != nil {
			return nil, fmt.Errorf("the server's gtid_purged: %w", err)
		}
		si.Purged = p
	} else {
		var domain uint32
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_domain_id").Scan(&domain); err != nil {
			return nil, fmt.Errorf("read gtid_domain_id: %w", err)
		}
		si.Identity = fmt.Sprintf("server_id:%d domain:%d", serverID, domain)
	}
	var cs string
	if err := db.QueryRowContext(ctx, "SELECT @@binlog_checksum").Scan(&cs); err != nil {
		return nil, fmt.Errorf("read binlog_checksum: %w", err)
	}
	si.Checksum = cs == "CRC32"
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("SHOW BINARY LOGS (is log_bin on? the user needs BINLOG MONITOR or REPLICATION CLIENT): %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		var lf LogFile
		dest := []any{&lf.Name, &lf.Size}
		for len(dest) < len(cols) {
			dest = append(dest, new(sql.RawBytes))
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		si.Logs = append(si.Logs, lf)
	}
	if len(si.Logs) == 0 {
		return nil, errors.New("the server has no binary logs: start it with log_bin on")
	}
	return si, rows.Err()
}

func (si *ServerInfo) size(file string) (uint64, bool) {
	for _, l := range si.Logs {
		if l.Name == file {
			return l.Size, true
		}
	}
	return 0, false
}

// resumePoint decides where to stream from, recording a gap when the
// archive cannot continue where it stopped.
func resumePoint(ctx context.Context, st *Store, ix *Index, si *ServerInfo) (file string, pos uint32, gap *Gap) {
	first := si.Logs[0].Name
	last := ix.Last()
	if last == nil {
		return first, 4, nil
	}
	file, pos = last.File, last.End
	if last.Next != "" {
		file, pos = last.Next, 4
	}
	mk := func(reason string) *Gap {
		return &Gap{BeforeSeq: last.Seq + 1, LastFile: last.File, LastPos: last.End, LastTime: last.LastTime,
			ResumeFile: first, ResumePos: 4, Reason: reason, DetectedAt: time.Now().UTC()}
	}
	if last.Identity != "" && last.Identity != si.Identity {
		return first, 4, mk(fmt.Sprintf("server identity changed from %q to %q", last.Identity, si.Identity))
	}
	size, ok := si.size(file)
	if !ok {
		g := mk(fmt.Sprintf("binlog file %s was purged from the server before it was archived", file))
		if last.FlavorName() == fl.MySQL && !si.Purged.IsEmpty() {
			// What the server purged and the archive never received.
			have, err := gtid.Parse(fl.MySQL, last.Executed)
			if err == nil {
				if missing, err := si.Purged.Subtract(have); err == nil && !missing.IsEmpty() {
					g.MissingGTIDs = missing.String()
					g.Reason += fmt.Sprintf("; the archive misses GTIDs %s", g.MissingGTIDs)
				}
			}
		}
		return first, 4, g
	}
	if uint64(pos) > size {
		return first, 4, mk(fmt.Sprintf("binlog file %s is shorter (%d bytes) than the archived position %d: the server's binlogs were reset", file, size, pos))
	}
	return file, pos, nil
}

// Run streams binlog events from src into the archive until ctx ends or
// RunFor passes. It resumes exactly after the last segment in the archive:
// nothing is lost and nothing is archived twice, whatever stopped the last
// run. On return, every event received has been written or will be
// streamed again by the next run. Run counts the requests of st for the
// Status (wrapping st.B until it returns): st is not for others to use
// meanwhile.
func Run(ctx context.Context, st *Store, db *sql.DB, src Source, opt Options) (*Status, error) {
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = time.Second
	}
	if opt.MaxSegmentBytes <= 0 {
		opt.MaxSegmentBytes = 8 << 20
	}
	logf := opt.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// This run's requests, for Status: the Store's backend is wrapped for
	// the run (and unwrapped when it returns, after the roll-ups).
	reqs, since := counting.New(st.B), time.Now()
	st.B = reqs
	defer func() { st.B = reqs.B }()
	// The newest objects only: the newest roll-up and the open tail.
	ix, err := st.ReadTail(ctx)
	if err != nil {
		return nil, err
	}
	var lastSeq uint64
	if l := ix.Last(); l != nil {
		lastSeq = l.Seq
	}
	if err := st.RemoveOrphans(ctx, ix); err != nil {
		return nil, fmt.Errorf("remove unindexed segments: %w", err)
	}
	if err := st.SweepOrphanPage(ctx, ix, time.Now(), orphanSweepEvery); err != nil {
		return nil, fmt.Errorf("remove unindexed segments: %w", err)
	}
	srcFlavor, err := fl.ParseName(src.Flavor)
	if err != nil {
		return nil, fmt.Errorf("binlog source: %w", err)
	}
	si, err := Inspect(ctx, db, string(srcFlavor))
	if err != nil {
		return nil, err
	}
	file, pos, gap := resumePoint(ctx, st, ix, si)
	status := &Status{File: file, Pos: pos, LastSeq: lastSeq}
	if l := ix.Last(); l != nil {
		status.LastEventTime, status.LastGTID = l.LastTime, l.LastGTID
	}
	if gap != nil {
		if err := st.WriteGap(ctx, gap); err != nil {
			return nil, err
		}
		status.GapsFound++
		logf("binlog gap", "reason", gap.Reason, "resume_file", gap.ResumeFile)
	}

	// MariaDB leaves ANNOTATE_ROWS events out of the dump unless asked:
	// without them the archive would not be the server's binlog byte for byte.
	//
	// Both flavors resume by position, also MySQL with GTIDs on: the
	// segments of a file are that file byte for byte, and a GTID-based dump
	// (COM_BINLOG_DUMP_GTID) restarts at the start of the first file that
	// holds a transaction the archive lacks and leaves out those it has,
	// so the stream would not continue the last segment. GTIDs decide what
	// is lost instead: on MySQL every segment records the executed set at
	// its end, and a resume compares it with the server's gtid_purged
	// (resumePoint), recording a gap with the missing set.
	dumpFlags := uint16(replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT)
	if srcFlavor == fl.MySQL {
		dumpFlags = 0
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: src.ReplicaID, Flavor: srcFlavor.GoMySQL(), Host: src.Host, Port: src.Port, User: src.User, Password: src.Password,
		RawModeEnabled: true, VerifyChecksum: true, HeartbeatPeriod: 500 * time.Millisecond, ReadTimeout: 30 * time.Second,
		DisableRetrySync: true, DumpCommandFlag: dumpFlags, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	defer syncer.Close()
	streamer, err := syncer.StartSync(mysql.Position{Name: file, Pos: pos})
	if err != nil {
		return nil, fmt.Errorf("start binlog stream at %s:%d: %w", file, pos, err)
	}
	logf("binlog stream started", "file", file, "pos", pos)

	a := &run{st: st, opt: opt, status: status, identity: si.Identity, checksum: si.Checksum, flavor: srcFlavor,
		cur: file, curPos: pos, lags: newLagWindow(20000), reqs: reqs, since: since}
	if l := ix.Last(); srcFlavor == fl.MySQL && l != nil && gap == nil && l.FlavorName() == fl.MySQL && l.Next == "" && l.Executed != "" {
		// Resuming inside the file: its Previous_gtids is not sent again.
		if a.executed, err = gtid.Parse(fl.MySQL, l.Executed); err != nil {
			return nil, fmt.Errorf("%w: segment %d: executed GTID set: %v", ErrCorrupt, l.Seq, err)
		}
		a.known = true
	}
	if !opt.NoRollUp {
		a.roller = startRoller(ctx, st, !opt.NoCompact, logf)
		defer a.stopRoller()
		a.roller.trigger() // what earlier runs left closed
	}
	began := time.Now()
	lastProgress := time.Now()
	for {
		if opt.RunFor > 0 && time.Since(began) >= opt.RunFor {
			return a.finish(ctx, nil)
		}
		wait := time.Second
		if len(a.buf) > 0 {
			wait = time.Until(a.segRecv[0].Add(opt.FlushInterval - a.uploadBudget()))
		}
		if wait <= 0 {
			if err := a.flush(ctx, ""); err != nil {
				return status, err
			}
			continue
		}
		ectx, cancel := context.WithTimeout(ctx, wait)
		ev, err := streamer.GetEvent(ectx)
		cancel()
		if time.Since(lastProgress) >= time.Second && opt.Progress != nil {
			lastProgress = time.Now()
			opt.Progress(a.snapshot())
		}
		if err != nil {
			if ctx.Err() != nil {
				return a.finish(context.WithoutCancel(ctx), ctx.Err())
			}
			if errors.Is(err, context.DeadlineExceeded) {
				continue // flush deadline or idle tick
			}
			return a.finish(context.WithoutCancel(ctx), fmt.Errorf("binlog stream at %s:%d: %w", a.cur, a.curPos, err))
		}
		raw := ev.RawData
		h, err := parseHeader(raw)
		if err != nil {
			return a.finish(ctx, err)
		}
		if h.Type == evHeartbeat || h.Type == evHeartbeatV2 {
			a.status.CaughtUp = len(a.buf) == 0
			continue
		}
		artificial := h.Flags&flagArtificial != 0 || h.LogPos == 0
		if h.Type == evRotate && artificial {
			// The server names the file it streams from: at the start, and
			// when it moves on from a file that ended without a rotate
			// event (a crash or a stop).
			next, npos := rotateOf(ev)
			if next != a.cur {
				if err := a.flush(ctx, next); err != nil {
					return status, err
				}
				if next != nextFile(a.cur) || npos != 4 {
					g := &Gap{BeforeSeq: a.status.LastSeq + 1, LastFile: a.cur, LastPos: a.curPos, LastTime: a.status.LastEventTime,
						ResumeFile: next, ResumePos: uint32(npos), DetectedAt: time.Now().UTC(),
						Reason: fmt.Sprintf("the server moved the stream from %s:%d to %s:%d", a.cur, a.curPos, next, npos)}
					if err := st.WriteGap(ctx, g); err != nil {
						return status, err
					}
					a.status.GapsFound++
				}
				a.cur, a.curPos = next, uint32(npos)
			}
			continue
		}
		if artificial || (h.Type == evFormatDesc && h.start() != a.curPos) {
			continue // made up for the dump, or the format event resent on resume
		}
		if h.start() != a.curPos {
			return a.finish(ctx, fmt.Errorf("binlog stream jumped in %s: expected an event at %d, got one at %d", a.cur, a.curPos, h.start()))
		}
		if err := a.add(h, raw); err != nil {
			return a.finish(ctx, err)
		}
		a.status.CaughtUp = false
		switch {
		case h.Type == evRotate:
			next, _ := rotateOf(ev)
			if err := a.flush(ctx, next); err != nil {
				return status, err
			}
			a.cur, a.curPos = next, 4
		case h.Type == evStop:
			if err := a.flush(ctx, nextFile(a.cur)); err != nil {
				return status, err
			}
		case len(a.buf) >= opt.MaxSegmentBytes:
			if err := a.flush(ctx, ""); err != nil {
				return status, err
			}
		}
	}
}

// run is the state of one archiver run.
type run struct {
	st       *Store
	opt      Options
	status   *Status
	identity string
	checksum bool
	flavor   fl.Name
	// executed is, for MySQL, the server's executed GTID set after the
	// last event received; known says it is (from the file's
	// Previous_gtids or the last segment of the archive).
	executed gtid.Set
	known    bool

	cur    string // file being streamed
	curPos uint32 // position of the next event in cur

	buf     []byte
	segRecv []time.Time // receive time of each buffered event
	seg     Segment
	lags    *lagWindow
	uploads []time.Duration
	roller  *roller
	reqs    *counting.Backend // the Store's requests since the run began
	since   time.Time
}

func (a *run) add(h header, raw []byte) error {
	now := time.Now()
	if len(a.buf) == 0 {
		a.seg = Segment{File: a.cur, Start: a.curPos, FirstTime: eventTime(h.Timestamp), ServerID: h.ServerID, Identity: a.identity,
			Flavor: a.flavor}
	}
	if a.flavor == fl.MySQL {
		if err := a.track(h, raw); err != nil {
			return fmt.Errorf("%w at %s:%d", err, a.cur, a.curPos)
		}
	}
	a.buf = append(a.buf, raw...)
	a.segRecv = append(a.segRecv, now)
	a.seg.Events++
	a.seg.LastTime = eventTime(h.Timestamp)
	if g := gtidOf(h, raw); g != "" {
		if a.seg.FirstGTID == "" {
			a.seg.FirstGTID = g
		}
		a.seg.LastGTID = g
	}
	a.curPos = h.LogPos
	if a.known {
		a.seg.Executed = a.executed.String()
	}
	return nil
}

// track keeps the executed GTID set of a MySQL stream: a file's
// Previous_gtids sets it, each GTID event adds its transaction.
func (a *run) track(h header, raw []byte) error {
	switch {
	case h.Type == evPrevGTIDs:
		prev, err := previousGTIDs(raw, a.checksum)
		if err != nil {
			return err
		}
		if a.executed, err = gtid.Parse(fl.MySQL, prev); err != nil {
			return fmt.Errorf("the Previous_gtids event's set: %w", err)
		}
		a.known = true
	case a.known && (h.Type == evMySQLGTID || h.Type == evMySQLGTIDTag):
		g := gtidOf(h, raw)
		if g == "" {
			return fmt.Errorf("GTID event of %d bytes does not parse", len(raw))
		}
		one, err := gtid.ParseOne(fl.MySQL, g)
		if err != nil {
			return err
		}
		if a.executed, err = a.executed.Union(one); err != nil {
			return err
		}
	}
	return nil
}

// uploadBudget is how long before the flush deadline a segment is closed,
// so that writing it still fits in the flush interval: the slowest recent
// write, plus 5% of the interval for the time an event spends between its
// commit and its arrival here.
func (a *run) uploadBudget() time.Duration {
	var worst time.Duration
	for _, d := range a.uploads {
		worst = max(worst, d)
	}
	return min(worst+a.opt.FlushInterval/20, a.opt.FlushInterval/2)
}

// flush writes the buffered events as the next segment. next names the
// following file when the segment ends its file.
func (a *run) flush(ctx context.Context, next string) error {
	if len(a.buf) == 0 {
		return nil
	}
	a.seg.Seq = a.status.LastSeq + 1
	a.seg.End = a.curPos
	a.seg.Next = next
	a.seg.ArchivedAt = time.Now().UTC()
	t0 := time.Now()
	if err := a.st.WriteSegment(ctx, &a.seg, a.buf); err != nil {
		return err
	}
	done := time.Now()
	a.uploads = append(a.uploads, done.Sub(t0))
	if len(a.uploads) > 20 {
		a.uploads = a.uploads[1:]
	}
	for _, r := range a.segRecv {
		a.lags.add(done.Sub(r))
	}
	s := a.status
	s.LastSeq, s.File, s.Pos = a.seg.Seq, a.seg.File, a.seg.End
	s.LastEventTime = a.seg.LastTime
	s.DurableAt = done.UTC()
	if a.seg.LastGTID != "" {
		s.LastGTID = a.seg.LastGTID
	}
	s.Segments++
	s.Bytes += a.seg.RawSize
	a.buf, a.segRecv = a.buf[:0], a.segRecv[:0]
	if next != "" && a.roller != nil {
		a.roller.trigger()
	}
	if a.opt.Progress != nil {
		a.opt.Progress(a.snapshot())
	}
	return nil
}

func (a *run) snapshot() Status {
	s := *a.status
	s.LagP50Ms, s.LagP99Ms, s.LagMaxMs = a.lags.percentiles()
	s.Pending = len(a.segRecv)
	if len(a.segRecv) > 0 {
		s.PendingSince = a.segRecv[0].UTC()
	}
	s.UpdatedAt = time.Now().UTC()
	c := a.reqs.Counts()
	s.Writes, s.ListPages, s.Reads, s.Deletes = c.Put, c.ListPages, c.Get+c.Stat, c.Delete
	s.WritesPerHour = float64(c.Put) / max(time.Since(a.since), time.Minute).Hours()
	return s
}

// finish writes what is buffered and returns the final status with err.
func (a *run) finish(ctx context.Context, err error) (*Status, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if ferr := a.flush(fctx, ""); ferr != nil && err == nil {
		err = ferr
	}
	a.stopRoller() // its writes are in the final status
	s := a.snapshot()
	return &s, err
}

// stopRoller waits for the roll-up under way, if any, and ends the
// roller.
func (a *run) stopRoller() {
	if a.roller != nil {
		a.roller.stop()
		a.roller = nil
	}
}

// lagWindow keeps the last n lags.
type lagWindow struct {
	v    []time.Duration
	next int
	full bool
}

func newLagWindow(n int) *lagWindow { return &lagWindow{v: make([]time.Duration, n)} }

func (w *lagWindow) add(d time.Duration) {
	w.v[w.next] = d
	w.next++
	if w.next == len(w.v) {
		w.next, w.full = 0, true
	}
}

func (w *lagWindow) percentiles() (p50, p99, maxMs float64) {
	n := w.next
	if w.full {
		n = len(w.v)
	}
	if n == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), w.v[:n]...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(s[n*50/100]), ms(s[min(n-1, n*99/100)]), ms(s[n-1])
}

// rotateOf returns the file and position a rotate event names, as parsed by
// the replication client (which knows whether the event carries a checksum).
func rotateOf(ev *replication.BinlogEvent) (string, uint64) {
	if r, ok := ev.Event.(*replication.RotateEvent); ok {
		return string(r.NextLogName), r.Position
	}
	return "", 0
}
