package binlog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/gcs"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// BenchmarkWeekArchive (make bench-archive) measures the reads of the
// 7-day, 1-s-segment archive (604,800 segments, 152 binlog files) that the
// archiver, PITR planning and the catalog views make, on the memory backend
// and on the in-process GCS emulator (fake-gcs-server, over HTTP, through
// the real GCS backend) with no added latency and with benchLatency per
// request (gcs.FaultTransport), as a GCS region over the network adds.
// It prints a table of times and requests by kind, and the operation
// counts of an archive per day for a few flush intervals and segment
// sizes, from the per-segment and per-file costs it measured.
//
// The phases call what the real code paths call:
//   - resume: the start of an archiver run (Run): ReadTail, RemoveOrphans
//     and one page of SweepOrphanPage.
//   - pitr-plan: activities.PlanPITR: ReadIndex (no CheckAllData) and the
//     windows over 7 daily backups, for a target 3 days in.
//   - ls-status: `strata ls` and `strata archive status` (archiveReport.fromRepo,
//     also the archive workflow's coverage query): ReadIndex with
//     CheckAllData and the windows.
//
// The emulator's memory backend keeps a bucket's objects in a slice: every
// GET scans it, every listing page scans and sorts it, and every object
// created scans it three times (loading n objects is O(n²)). A bucket of
// the 606,000 objects of the rolled-up archive cannot be loaded, and its
// per-request cost would be the emulator's, not the network's. So, before
// compaction, the emulator's bucket holds every object under each prefix
// that resume and pitr-plan list and every object they read, recorded on
// the memory backend (the other data objects are never listed nor read by
// them); each phase's requests, by kind, are checked equal to those it
// made on the memory backend over the whole archive. ls-status lists all
// the data objects: its emulator figures before compaction are derived
// (marked so), from its requests and the per-request time measured by
// pitr-plan. The emulator's per-request cost against its bucket size is
// measured separately (emulator-cost table).
func BenchmarkWeekArchive(b *testing.B) {
	ctx := context.Background()
	b.Setenv("STORAGE_EMULATOR_HOST", "")
	wb := &weekBench{sweepAt: time.Now()}
	mem := memory.New()
	wb.rec = &touchRecorder{Backend: mem}
	cb := counting.New(wb.rec)
	st := &Store{B: cb, Instance: "i1"}

	t0 := time.Now()
	if err := generateWeek(ctx, st); err != nil {
		b.Fatal(err)
	}
	wb.write = opCost{what: "archive writes (WriteSegment)", d: time.Since(t0), c: cb.Counts(), per: weekSegments, unit: "segment"}
	cb.Reset()
	t0 = time.Now()
	ix, err := st.ReadIndex(ctx)
	if err != nil {
		b.Fatal(err)
	}
	wb.add(archiveRow{state: "as written", backend: "memory", phase: "read-index", d: time.Since(t0), c: cb.Counts()})
	cb.Reset()
	t0 = time.Now()
	n, err := st.RollUp(ctx, ix)
	if err != nil {
		b.Fatal(err)
	}
	if n != weekFiles-1 {
		b.Fatalf("%d roll-ups, want %d", n, weekFiles-1)
	}
	wb.rollup = opCost{what: "roll-up (RollUp)", d: time.Since(t0), c: cb.Counts(), per: n, unit: "closed file"}

	wb.state(b, ctx, "rolled-up", mem, cb, st)

	// As the archiver compacts: ReadTail, then Compact.
	if ix, err = st.ReadTail(ctx); err != nil {
		b.Fatal(err)
	}
	cb.Reset()
	t0 = time.Now()
	if n, err = st.Compact(ctx, ix); err != nil {
		b.Fatal(err)
	}
	wb.compact = opCost{what: fmt.Sprintf("compaction (Compact, %d packs)", n), d: time.Since(t0), c: cb.Counts(), per: weekFiles - 1, unit: "closed file"}
	if err := checkCompacted(ctx, st, n); err != nil {
		b.Fatal(err)
	}
	wb.state(b, ctx, "compacted", mem, cb, st)
	wb.costs = measureEmulatorCost(b, ctx)

	wb.print(os.Stdout)
}

const benchLatency = 20 * time.Millisecond

// checkCompacted checks that the closed files' data objects are in packs
// and a segment inside them reads back as written.
func checkCompacted(ctx context.Context, st *Store, packs int) error {
	ix, err := st.ReadIndex(ctx)
	if err != nil {
		return err
	}
	data, err := st.ListData(ctx)
	if err != nil {
		return err
	}
	if packs == 0 || len(ix.Packs) != packs || len(data) != weekTail {
		return fmt.Errorf("compaction: %d packs written, %d listed, %d data objects left (want the tail's %d)", packs, len(ix.Packs), len(data), weekTail)
	}
	seg := &ix.Segments[3*24*3600+17]
	ev, err := st.ReadSegment(ctx, seg)
	if err != nil {
		return err
	}
	if len(ev) != 64 || ev[1] != 10 {
		return fmt.Errorf("compaction: segment %d reads back %d bytes", seg.Seq, len(ev))
	}
	return nil
}

// weekBench holds what BenchmarkWeekArchive measured.
type weekBench struct {
	sweepAt time.Time // the time that picks SweepOrphanPage's page
	rec     *touchRecorder
	rows    []archiveRow
	costs   []emulatorCost
	// fullBucket is the most objects of a state not loaded whole.
	fullBucket int
	write      opCost
	rollup     opCost
	compact    opCost
}

// archiveRow is one phase measured in one state of the archive on one
// backend.
type archiveRow struct {
	state, backend, phase string
	d                     time.Duration
	c                     Counts
	http                  int64 // HTTP requests through the transport (emulator)
	objects               int   // objects in the emulator's bucket
	derived               string
}

// opCost is the requests that writing or rewriting the archive made.
type opCost struct {
	what string
	d    time.Duration
	c    Counts
	per  int
	unit string
}

func (wb *weekBench) add(r archiveRow) { wb.rows = append(wb.rows, r) }

// archivePhase is one read of the archive, as a real code path makes it.
type archivePhase struct {
	name string
	run  func(ctx context.Context, st *Store) error
}

func (wb *weekBench) phases() []archivePhase {
	backups := weekBackups()
	target := Target{Time: synthStart.Add(3*24*time.Hour + 17*time.Second)}
	return []archivePhase{
		{"resume", func(ctx context.Context, st *Store) error {
			ix, err := st.ReadTail(ctx)
			if err != nil {
				return err
			}
			if err := st.RemoveOrphans(ctx, ix); err != nil {
				return err
			}
			if err := st.SweepOrphanPage(ctx, ix, wb.sweepAt, orphanSweepEvery); err != nil {
				return err
			}
			if l := ix.Last(); l == nil || l.Seq != weekSegments {
				return fmt.Errorf("resume: last segment %v, want %d", l, weekSegments)
			}
			return nil
		}},
		{"pitr-plan", func(ctx context.Context, st *Store) error {
			ix, err := st.ReadIndex(ctx)
			if err != nil {
				return err
			}
			if id := planPITR(backups, ix, target); id != "day3" {
				return fmt.Errorf("pitr-plan: planned from backup %q, want day3", id)
			}
			return nil
		}},
		{"ls-status", func(ctx context.Context, st *Store) error {
			cat := &Store{B: st.B, Instance: st.Instance, CheckAllData: true}
			ix, err := cat.ReadIndex(ctx)
			if err != nil {
				return err
			}
			w := Windows(backups, ix)
			var raw int64
			for i := range ix.Segments {
				raw += ix.Segments[i].RawSize
			}
			if len(w) != 1 || len(ix.Segments) != weekSegments || len(ix.Missing) != 0 || raw == 0 {
				return fmt.Errorf("ls-status: %d windows, %d segments, %d missing", len(w), len(ix.Segments), len(ix.Missing))
			}
			return nil
		}},
	}
}

// planPITR is activities.PlanPITR's choice: the windows of every backup
// (for its message), then the newest backup before the target whose
// window reaches it.
func planPITR(backups []*manifest.Manifest, ix *Index, t Target) string {
	_ = Windows(backups, ix)
	for i := len(backups) - 1; i >= 0; i-- {
		b := backups[i]
		if b.BinlogFile == "" || !Before(b, t) {
			continue
		}
		for _, w := range Windows([]*manifest.Manifest{b}, ix) {
			if w.Reaches(t) {
				return b.BackupID
			}
		}
	}
	return ""
}

// weekBackups are 7 daily backups of the 7-day archive, oldest first, at
// the start of each day's first segment.
func weekBackups() []*manifest.Manifest {
	var out []*manifest.Manifest
	for d := range 7 {
		i := d * 24 * 3600
		out = append(out, &manifest.Manifest{BackupID: fmt.Sprintf("day%d", d), Type: "full",
			BinlogFile: fmt.Sprintf("binlog.%06d", i/weekPerFile+1), BinlogPos: uint64(4 + (i%weekPerFile)*64),
			GTIDSet: fmt.Sprintf("0-1-%d", i), ConsistentAt: synthStart.Add(time.Duration(i) * time.Second)})
	}
	return out
}

// state measures every phase in one state of the archive: on the memory
// backend, then on the emulator without and with latency.
func (wb *weekBench) state(b *testing.B, ctx context.Context, state string, mem *memory.Backend, cb *counting.Backend, st *Store) {
	onMemory := map[string]archiveRow{}
	touched := map[string]*touchSet{}
	for _, p := range wb.phases() {
		b.Run(state+"/memory/"+p.name, func(b *testing.B) {
			var r archiveRow
			for range b.N {
				wb.rec.start()
				cb.Reset()
				t0 := time.Now()
				if err := p.run(ctx, st); err != nil {
					b.Fatal(err)
				}
				r = archiveRow{state: state, backend: "memory", phase: p.name, d: time.Since(t0), c: cb.Counts()}
				touched[p.name] = wb.rec.stop()
			}
			reportCounts(b, r)
			wb.add(r)
			onMemory[p.name] = r
		})
	}

	all, err := mem.List(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	// The whole bucket when the emulator can hold it; else what the
	// phases that reach at most emulatorMaxObjects objects reach.
	whole := len(all) <= emulatorMaxObjects
	derived := map[string]bool{}
	keep := func(string) bool { return true }
	if !whole {
		var sets []*touchSet
		for _, p := range wb.phases() {
			n := 0
			for _, o := range all {
				if touched[p.name].reaches(o.Key) {
					n++
				}
			}
			if n > emulatorMaxObjects {
				derived[p.name] = true
				continue
			}
			sets = append(sets, touched[p.name])
		}
		keep = func(key string) bool {
			for _, s := range sets {
				if s.reaches(key) {
					return true
				}
			}
			return false
		}
	}
	if !whole {
		wb.fullBucket = max(wb.fullBucket, len(all))
	}
	srv, objects, load := loadEmulator(b, ctx, mem, all, keep)
	defer srv.Stop()
	fmt.Fprintf(os.Stderr, "%s: %d of %d objects loaded into the emulator in %s\n", state, objects, len(all), load.Round(time.Millisecond))

	for _, lat := range []time.Duration{0, benchLatency} {
		backend := "gcs-emulator"
		if lat > 0 {
			backend += "+" + lat.String()
		}
		g, ft := emulatorBackend(b, ctx, srv, lat)
		for _, p := range wb.phases() {
			m := onMemory[p.name]
			if derived[p.name] {
				// It lists all the data objects: derived from pitr-plan's
				// time per request on this backend.
				var ref archiveRow
				for _, r := range wb.rows {
					if r.state == state && r.backend == backend && r.phase == "pitr-plan" {
						ref = r
					}
				}
				refMem := onMemory["pitr-plan"]
				per := (ref.d - refMem.d) / time.Duration(max(ref.c.Requests(), 1))
				wb.add(archiveRow{state: state, backend: backend, phase: p.name, c: m.c, d: m.d + time.Duration(m.c.Requests())*per,
					derived: fmt.Sprintf("derived: memory time + %d requests × %s (pitr-plan's time per request here)", m.c.Requests(), per.Round(10*time.Microsecond))})
				continue
			}
			b.Run(state+"/"+backend+"/"+p.name, func(b *testing.B) {
				var r archiveRow
				for range b.N {
					gc := counting.New(g)
					est := &Store{B: gc, Instance: st.Instance}
					h0 := ft.Requests()
					t0 := time.Now()
					if err := p.run(ctx, est); err != nil {
						b.Fatal(err)
					}
					r = archiveRow{state: state, backend: backend, phase: p.name, d: time.Since(t0), c: gc.Counts(), http: ft.Requests() - h0, objects: objects}
				}
				if r.c != m.c {
					b.Fatalf("%s on the emulator made %s, on the memory backend %s: the emulator's bucket does not answer as the archive does", p.name, r.c, m.c)
				}
				reportCounts(b, r)
				b.ReportMetric(float64(r.http), "http-requests/op")
				wb.add(r)
			})
		}
	}
}

// emulatorMaxObjects is the largest bucket loaded whole into the emulator
// (its load is quadratic in the objects: about 70 s at this size).
const emulatorMaxObjects = 8000

func reportCounts(b *testing.B, r archiveRow) {
	b.ReportMetric(float64(r.c.Requests()), "requests/op")
	b.ReportMetric(float64(r.c.Get+r.c.Stat), "gets/op")
	b.ReportMetric(float64(r.c.ListPages), "lists/op")
	b.ReportMetric(float64(r.c.Put), "puts/op")
	b.ReportMetric(float64(r.c.Delete), "deletes/op")
}

// touchRecorder records the keys read and the prefixes listed through it,
// between start and stop.
type touchRecorder struct {
	storage.Backend
	mu  sync.Mutex
	set *touchSet
}

// touchSet is what one phase read and listed.
type touchSet struct {
	keys     map[string]bool
	prefixes map[string]bool
}

// reaches says whether the phase read key or listed a prefix of it.
func (s *touchSet) reaches(key string) bool {
	if s.keys[key] {
		return true
	}
	for p := range s.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func (r *touchRecorder) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set = &touchSet{keys: map[string]bool{}, prefixes: map[string]bool{}}
}

func (r *touchRecorder) stop() *touchSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.set
	r.set = nil
	return s
}

func (r *touchRecorder) touch(key, prefix string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		return
	}
	if key != "" {
		r.set.keys[key] = true
	} else {
		r.set.prefixes[prefix] = true
	}
}

func (r *touchRecorder) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r.touch(key, "")
	return r.Backend.Get(ctx, key)
}

func (r *touchRecorder) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	r.touch(key, "")
	return r.Backend.Stat(ctx, key)
}

func (r *touchRecorder) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	r.touch("", prefix)
	return r.Backend.List(ctx, prefix)
}

const emulatorBucket = "strata-bench"

// loadEmulator starts an emulator and creates in its bucket, without HTTP,
// the objects of all that keep accepts, with the memory backend's bytes.
func loadEmulator(b *testing.B, ctx context.Context, mem *memory.Backend, all []storage.ObjectInfo, keep func(string) bool) (*fakestorage.Server, int, time.Duration) {
	b.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Port: 0})
	if err != nil {
		b.Fatal(err)
	}
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: emulatorBucket})
	var took time.Duration
	n := 0
	for _, o := range all {
		if !keep(o.Key) {
			continue
		}
		data, err := readObject(ctx, mem, o.Key)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: emulatorBucket, Name: o.Key}, Content: data})
		took += time.Since(t0)
		n++
	}
	return srv, n, took
}

func readObject(ctx context.Context, be storage.Backend, key string) ([]byte, error) {
	rc, err := be.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// emulatorBackend is the GCS backend on the emulator's bucket, with
// latency added to every HTTP request.
func emulatorBackend(b *testing.B, ctx context.Context, srv *fakestorage.Server, latency time.Duration) (*gcs.Backend, *gcs.FaultTransport) {
	b.Helper()
	ft := &gcs.FaultTransport{Base: http.DefaultTransport.(*http.Transport).Clone(), Latency: latency}
	g, err := gcs.New(ctx, gcs.Options{Bucket: emulatorBucket, Endpoint: srv.URL(), HTTPClient: &http.Client{Transport: ft}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = g.Close() })
	return g, ft
}

// emulatorCost is the emulator's own time (no latency added) with a
// bucket of a given size: to create its objects, per GET, and per listing
// page of a prefix that matches 100 objects and of one that matches all.
type emulatorCost struct {
	objects                     int
	load, get, listFew, listAll time.Duration
}

// measureEmulatorCost measures the emulator's cost against the size of
// its bucket, at 1,000, 2,000 and 4,000 objects (the GET is of the newest
// object: the emulator finds an object by scanning its bucket in the order
// the objects were created).
func measureEmulatorCost(b *testing.B, ctx context.Context) []emulatorCost {
	b.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Port: 0})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: emulatorBucket})
	create := func(key string) {
		srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: emulatorBucket, Name: key}, Content: []byte(key)})
	}
	for i := range 100 {
		create(fmt.Sprintf("probe/few/%08d", i))
	}
	g, _ := emulatorBackend(b, ctx, srv, 0)
	timeIt := func(n int, f func() error) time.Duration {
		t0 := time.Now()
		for range n {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0) / time.Duration(n)
	}
	var out []emulatorCost
	objects := 100
	t0 := time.Now()
	for _, size := range []int{1000, 2000, 4000} {
		for ; objects < size; objects++ {
			create(fmt.Sprintf("probe/all/%08d", objects))
		}
		c := emulatorCost{objects: size, load: time.Since(t0)}
		newest := fmt.Sprintf("probe/all/%08d", objects-1)
		c.get = timeIt(50, func() error { _, err := readObject(ctx, g, newest); return err })
		c.listFew = timeIt(20, func() error { _, err := g.List(ctx, "probe/few/"); return err })
		c.listAll = timeIt(3, func() error { _, err := g.List(ctx, "probe/all/"); return err })
		c.listAll /= time.Duration((objects - 100 + counting.ListPageSize - 1) / counting.ListPageSize) // per page
		out = append(out, c)
	}
	return out
}

// print writes the tables.
func (wb *weekBench) print(out io.Writer) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(&buf, "\n7-day archive, 1-s segments: %d segments in %d binlog files (%d closed, a tail of %d segments)\n\n", weekSegments, weekFiles, weekFiles-1, weekTail)
	fmt.Fprintln(tw, "state\tbackend\tphase\ttime\trequests\tgets\tlists\tputs\tdeletes\thttp\tbucket objects\t")
	for _, r := range wb.rows {
		d := r.d.Round(time.Millisecond).String()
		http, objs := "-", "-"
		if r.http > 0 {
			http = fmt.Sprint(r.http)
		}
		if r.objects > 0 {
			objs = fmt.Sprint(r.objects)
		}
		if r.derived != "" {
			d = "≈" + d + " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", r.state, r.backend, r.phase, d, r.c.Requests(),
			r.c.Get+r.c.Stat, r.c.ListPages, r.c.Put, r.c.Delete, http, objs)
	}
	_ = tw.Flush()
	for _, r := range wb.rows {
		if r.derived != "" {
			fmt.Fprintf(&buf, "  * %s %s %s: %s\n", r.state, r.backend, r.phase, r.derived)
		}
	}
	fmt.Fprintf(&buf, "  lists: listing requests (pages of %d keys); gets: GET and stat requests; http: requests through the transport\n", counting.ListPageSize)

	fmt.Fprintf(&buf, "\nThe emulator's own time (no latency) by bucket size: creating the objects (cumulative), a GET, a listing page\n"+
		"of a prefix matching 100 objects, of a prefix matching all (per page of %d)\n", counting.ListPageSize)
	tw = tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "bucket objects\tcreate all\tGET\tlist page (100 match)\tlist page (all match)\t")
	for _, c := range wb.costs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\n", c.objects, c.load.Round(time.Millisecond), c.get.Round(time.Microsecond),
			c.listFew.Round(time.Microsecond), c.listAll.Round(time.Microsecond))
	}
	_ = tw.Flush()
	if n := len(wb.costs); n >= 2 {
		a, z := wb.costs[0], wb.costs[n-1]
		grow := func(x, y time.Duration) float64 { return float64(y) / float64(max(x, 1)) }
		fmt.Fprintf(&buf, "  from %d to %d objects (×%.0f): create all ×%.1f, GET ×%.1f, list page (100 match) ×%.1f, list page (all match) ×%.1f\n",
			a.objects, z.objects, float64(z.objects)/float64(a.objects), grow(a.load, z.load), grow(a.get, z.get), grow(a.listFew, z.listFew), grow(a.listAll, z.listAll))
		if wb.fullBucket > 0 {
			k := float64(wb.fullBucket) / float64(z.objects)
			fmt.Fprintf(&buf, "  derived for the whole rolled-up archive (%d objects): a GET ≈%s (linear), creating it ≈%s (quadratic)\n",
				wb.fullBucket, time.Duration(float64(z.get)*k).Round(time.Millisecond), time.Duration(float64(z.load)*k*k).Round(time.Minute))
		}
	}
	fmt.Fprintf(&buf, "\nCost of writing and rewriting the archive (memory backend)\n")
	tw = tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\ttime\tgets\tlists\tputs\tdeletes\tper\tputs/per\tdeletes/per\tgets/per\t")
	for _, o := range []opCost{wb.write, wb.rollup, wb.compact} {
		if o.per == 0 {
			continue
		}
		p := float64(o.per)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d %s\t%.2f\t%.2f\t%.2f\t\n", o.what, o.d.Round(time.Millisecond), o.c.Get+o.c.Stat, o.c.ListPages,
			o.c.Put, o.c.Delete, o.per, o.unit, float64(o.c.Put)/p, float64(o.c.Delete)/p, float64(o.c.Get+o.c.Stat)/p)
	}
	_ = tw.Flush()
	wb.printPerDay(&buf)
	_, _ = out.Write(buf.Bytes())
}

// printPerDay writes the storage operations of one day of archive under
// steady writes, from the measured costs: a segment closes after the
// flush interval or at the segment size, whichever comes first.
func (wb *weekBench) printPerDay(buf *bytes.Buffer) {
	if wb.write.per == 0 || wb.rollup.per == 0 {
		return
	}
	const day = 24 * 3600.0
	const binlogFile = 1 << 30 // max_binlog_size default
	writePuts := float64(wb.write.c.Put) / float64(wb.write.per)
	rollPuts := float64(wb.rollup.c.Put) / float64(wb.rollup.per)
	rollDeletesPerSeg := float64(wb.rollup.c.Delete) / float64(weekSegments-weekTail)
	fmt.Fprintf(buf, "\nStorage operations per day under steady writes (binlog files of 1 GiB; from the measured costs above)\n")
	tw := tabwriter.NewWriter(buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "binlog rate\tflush_interval\tmax_segment_size\tRPO (s)\tsegments/day\tarchive puts\troll-up puts\troll-up deletes\tcompaction gets\tcompaction puts\tcompaction deletes\tobjects/day kept (rolled up)\tobjects/day kept (compacted)\t")
	for _, rate := range []float64{10 << 10, 1 << 20, 16 << 20} {
		for _, flush := range []float64{1, 5, 60} {
			for _, maxSeg := range []float64{8 << 20, 64 << 20} {
				if maxSeg != 8<<20 && maxSeg/rate >= flush {
					continue // the segment size does not matter at this rate
				}
				every := min(flush, maxSeg/rate)
				segs := day / every
				files := rate * day / binlogFile
				// A roll-up per closed file, or per RollupMaxSegments.
				rollups := max(files, segs/RollupMaxSegments) * rollPuts
				cg, cp, cd := "-", "-", "-"
				kept := segs + rollups
				keptC := "-"
				if wb.compact.per > 0 {
					cgets := float64(wb.compact.c.Get+wb.compact.c.Stat) / float64(weekSegments-weekTail) * segs
					cputs := float64(wb.compact.c.Put) / float64(wb.compact.per) * max(files, segs/RollupMaxSegments)
					cdel := float64(wb.compact.c.Delete) / float64(weekSegments-weekTail) * segs
					cg, cp, cd = fmt.Sprintf("%.0f", cgets), fmt.Sprintf("%.1f", cputs), fmt.Sprintf("%.0f", cdel)
					keptC = fmt.Sprintf("%.1f", rollups+cputs)
				}
				fmt.Fprintf(tw, "%s/s\t%gs\t%s\t%.3g\t%.0f\t%.0f\t%.1f\t%.0f\t%s\t%s\t%s\t%.0f\t%s\t\n", humanBytes(rate), flush, humanBytes(maxSeg), every,
					segs, segs*writePuts, rollups, segs*rollDeletesPerSeg, cg, cp, cd, kept, keptC)
			}
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(buf, "  an archive put is %.2f per segment (data object and index record); a roll-up is %.2f put per closed binlog file\n"+
		"  (or per %d segments of a long file) and deletes its index records. RPO: the flush interval or the time to fill a\n"+
		"  segment, plus the upload.\n", writePuts, rollPuts, RollupMaxSegments)
}

func humanBytes(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%gMiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%gKiB", v/(1<<10))
	}
	return fmt.Sprintf("%gB", v)
}
