// Package perf holds `make bench`: Strata's backup, incremental, restore,
// write stall, PITR replay and binlog archive lag, measured side by side
// with the pipelines a DBA types by hand (mariabackup | zstd, zstd -d |
// mbstream, --prepare, --move-back, mariadb-binlog | mariadb), on a
// sysbench data set built once by scripts/bench-dataset.sh, in one run,
// interleaved, with medians of -perf.runs runs; printed as tables with
// ratios and written as JSON (-perf.out).
//
// Strata runs as it does in production: `strata backup|restore --wait`
// (the CLI) against a Temporal dev server, a `strata worker` and a
// `strata agent` process, a local-disk repository. Its CPU is the agent's
// (with the backup tools it runs) and the worker's; its memory the agent's
// peak RSS during the operation.
package perf

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

var (
	datasetDir = flag.String("perf.dataset", "", "data set directory built by scripts/bench-dataset.sh (required)")
	nRuns      = flag.Int("perf.runs", 3, "runs of each measurement (medians are reported)")
	outPath    = flag.String("perf.out", "", "write the results as JSON to this file")
	writeFor   = flag.Duration("perf.write", 20*time.Second, "length of the write load whose binlog the PITR section replays")
	sections   = flag.String("perf.sections", "backup,incremental,restore,stall,pitr,logical", "sections to run, comma-separated")
	streamOut  = flag.String("perf.stream", "", "also save one uncompressed backup stream of the data set here (for the codec benchmark), if absent")
	replayPool = flag.String("perf.replay-pool", "", "buffer pool of the PITR replay servers, Strata's and the peer's (default: a quarter of the data set)")
	extraCfg   = flag.String("perf.config", "", "more top-level config blocks for Strata (YAML)")
)

// dataset describes the data set: its tables and rows, and its size.
type dataset struct {
	tables, rows int
	bytes        int64
}

func readDataset(b *testing.B, dir string) dataset {
	raw, err := os.ReadFile(filepath.Join(dir, "done"))
	if err != nil {
		b.Fatalf("no complete data set in %q: build it with scripts/bench-dataset.sh DIR SIZE (make bench does)", dir)
	}
	var d dataset
	if _, err := fmt.Sscanf(strings.TrimSpace(string(raw)), "%d x %d", &d.tables, &d.rows); err != nil {
		b.Fatalf("data set %s: unreadable done file %q", dir, raw)
	}
	d.bytes = int64(d.tables) * int64(d.rows) * 240
	return d
}

func mibString(n int64) string { return strconv.FormatInt(max(n>>20, 64), 10) + "M" }

func BenchmarkPerf(b *testing.B) {
	if *datasetDir == "" {
		b.Skip("-perf.dataset is not set: run `make bench`")
	}
	for i := 0; i < b.N; i++ {
		benchPerf(b)
	}
}

func benchPerf(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	ds := readDataset(b, *datasetDir)
	pool := mibString(ds.bytes + ds.bytes/8) // the whole set fits
	rpool := *replayPool
	if rpool == "" {
		rpool = mibString(ds.bytes / 4)
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*sections, ",") {
		want[strings.TrimSpace(s)] = true
	}
	e := newEnv(b, ctx, *datasetDir, pool, rpool, *extraCfg)
	def, err := pipeline.NewCodec(pipeline.DefaultCodec, 0)
	must(b, err)
	res := &results{
		Date: time.Now().UTC().Format(time.RFC3339),
		Host: map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(),
			"mariadb": e.sql("SELECT VERSION()"), "mariabackup": strings.TrimSpace(run(b, e.tools.mariabackup, "--version"))},
		Settings: map[string]string{
			"data set":               fmt.Sprintf("sysbench %d tables x %d rows (~%s data+index)", ds.tables, ds.rows, mibString(ds.bytes)),
			"source buffer pool":     pool,
			"replay buffer pool":     rpool,
			"runs":                   strconv.Itoa(*nRuns),
			"strata default codec":   fmt.Sprintf("%s level %d", def.Name(), def.Level()),
			"repository":             "local disk (same filesystem)",
			"write load":             "sysbench oltp_write_only, 4 threads, uniform keys",
			"pitr write load length": writeFor.String(),
		},
	}
	p := &peer{e: e, dir: filepath.Join(e.dir, "peer")}
	must(b, os.MkdirAll(p.dir, 0o700))
	p.writeCnf()
	if *streamOut != "" {
		if _, err := os.Stat(*streamOut); err != nil {
			p.rawStream(*streamOut)
		}
	}
	if want["pitr"] {
		if _, err := e.cli("archive", "start", "db1"); err != nil {
			b.Fatal(err)
		}
	}
	// Warm up: the page cache holds the data set, and both tools have run
	// once (the logical section warms up its own way: a first dump of each).
	if want["backup"] || want["incremental"] || want["restore"] || want["stall"] || want["pitr"] {
		e.strataBackup("dbz1", "full", "warm")
		p.full(1, "")
	}

	if want["backup"] {
		benchFull(b, e, p, res)
	}
	if want["incremental"] {
		benchIncremental(b, e, p, res, ds, def.Level())
	}
	if want["restore"] {
		benchRestore(b, e, p, res, def.Level())
	}
	if want["stall"] {
		benchStall(b, e, p, res, ds)
	}
	if want["pitr"] {
		benchPITR(b, e, p, res, ds, rpool)
	}
	if want["logical"] {
		benchLogical(b, e, p, res)
	}
	for _, s := range res.Sections {
		for _, m := range s.Methods {
			m.summarize()
		}
	}
	ratios(res)
	res.print(os.Stdout)
	if *outPath != "" {
		must(b, res.writeJSON(*outPath))
		fmt.Printf("\nresults written to %s\n", *outPath)
	}
}

// ratios derives the figures the goals are stated in.
func ratios(res *results) {
	for _, s := range res.Sections {
		switch s.Name {
		case "full backup":
			for _, l := range []string{"1", "3"} {
				s.ratio("seconds", "strata zstd-"+l, "mariabackup | zstd -T2 -"+l)
				s.ratio("stored_mib", "strata zstd-"+l, "mariabackup | zstd -T2 -"+l)
				s.ratio("cpu_seconds", "strata zstd-"+l, "mariabackup | zstd -T2 -"+l)
			}
		case "incremental backup":
			s.ratio("seconds", "strata incremental", "mariabackup --incremental-basedir | zstd")
			s.ratio("stored_mib", "strata incremental", "mariabackup --incremental-basedir | zstd")
		case "restore to a started server":
			s.ratio("seconds", "strata restore --start", "manual restore")
		case "write stall":
			s.ratio("max_latency_ms", "strata full", "mariabackup --log-copy-interval=100 | zstd")
		case "pitr replay":
			s.ratio("replay_seconds", "strata replay", "mariadb-binlog | mariadb")
		case logicalDumpS:
			for _, peer := range []string{lDumpZstd, lMydumper, lMydumperGz} {
				s.ratio("seconds", lStrataDump, peer)
				s.ratio("stored_mib", lStrataDump, peer)
				s.ratio("cpu_seconds", lStrataDump, peer)
			}
			s.ratio("seconds", lStrataDump3, lDumpZstd)
			s.ratio("stored_mib", lStrataDump3, lDumpZstd)
			s.ratio("cpu_seconds", lStrataDump3, lDumpZstd)
		case logicalLoadS:
			for _, peer := range []string{lLoadZstd, lMyloader} {
				s.ratio("seconds", lStrataLoad, peer)
				s.ratio("fetch_seconds", lStrataLoad, peer)
				s.ratio("cpu_seconds", lStrataLoad, peer)
			}
		}
	}
}

// ---- Strata

// strataBackup takes a backup through the CLI and measures it.
func (e *env) strataBackup(instance, typ, id string) sample {
	id = fmt.Sprintf("%s-%s-%d", id, typ, time.Now().UnixNano()%1e9)
	m := e.meter()
	out, err := e.cli("backup", instance, "--type", typ, "--id", id, "--wait", "--json")
	var s sample
	m.stop(&s)
	if err != nil {
		e.b.Fatal(err)
	}
	cliExit := time.Now()
	var r workflows.BackupResult
	if err := json.Unmarshal(out, &r); err != nil {
		e.b.Fatalf("backup result: %v\n%s", err, out)
	}
	s.RawBytes, s.StoredBytes = r.RawSize, r.StoredSize
	s.set("commits_blocked_seconds", r.CommitsBlockedSeconds)
	s.set("activity_seconds", r.DurationSeconds)
	events, closed := e.history(workflows.BackupWorkflowID(instance, id))
	s.set("history_events", float64(events))
	// CLI start → the backup tool starts streaming; the manifest written →
	// the workflow closed → the CLI has the result.
	s.set("overhead_start_seconds", r.StartTime.Sub(m.start).Seconds())
	s.set("overhead_end_seconds", closed.Sub(e.manifestWritten(instance, id)).Seconds())
	s.set("overhead_cli_seconds", cliExit.Sub(closed).Seconds())
	e.lastBackup[instance] = id
	return s
}

// ---- peers

// peer runs the hand-made pipelines.
type peer struct {
	e       *env
	dir     string
	cnf     string
	lsnDir  string // the newest peer backup's --extra-lsndir (incremental base)
	lastOut string // the newest peer full's file
	n       int
}

func (p *peer) writeCnf() {
	p.cnf = filepath.Join(p.dir, "client.cnf")
	must(p.e.b, os.WriteFile(p.cnf, []byte(fmt.Sprintf("[client]\nuser=root\npassword=%s\nsocket=%s\n", p.e.password, p.e.src.Socket)), 0o600))
}

func (p *peer) next() string {
	p.n++
	d := filepath.Join(p.dir, strconv.Itoa(p.n))
	must(p.e.b, os.MkdirAll(filepath.Join(d, "tmp"), 0o700))
	must(p.e.b, os.MkdirAll(filepath.Join(d, "lsn"), 0o700))
	return d
}

// backupCmd is the mariabackup command line of a streamed backup.
func (p *peer) backupCmd(d, extra string) string {
	return fmt.Sprintf("%s --defaults-file=%s --backup --stream=xbstream --target-dir=%s --extra-lsndir=%s --datadir=%s %s",
		p.e.tools.mariabackup, p.cnf, filepath.Join(d, "tmp"), filepath.Join(d, "lsn"), p.e.src.Datadir, extra)
}

// backup runs mariabackup --stream (with extra options) | zstd -T2
// -level > file in a new directory, and returns the run and the file;
// its --extra-lsndir becomes the next incremental's base.
func (p *peer) backup(level int, extra string) (sample, string) {
	d := p.next()
	out := filepath.Join(d, "backup.xb.zst")
	var s sample
	p.e.shell(fmt.Sprintf("%s 2>%s | %s -q -T2 -%d -c > %s", p.backupCmd(d, extra), filepath.Join(d, "mariabackup.log"), p.e.tools.zstd, level, out), &s)
	s.StoredBytes = fileSize(p.e.b, out)
	s.RawBytes = p.rawSize(out)
	p.lsnDir = filepath.Join(d, "lsn")
	return s, out
}

// full takes a full backup and keeps its file (the newest only).
func (p *peer) full(level int, extra string) sample {
	s, out := p.backup(level, extra)
	p.drop(p.lastOut)
	p.lastOut = out
	return s
}

// rawSize decompresses a stored stream to count its bytes (not timed).
func (p *peer) rawSize(file string) int64 {
	o := run(p.e.b, "bash", "-o", "pipefail", "-c", fmt.Sprintf("%s -dc %s | wc -c", p.e.tools.zstd, file))
	n, err := strconv.ParseInt(strings.TrimSpace(o), 10, 64)
	must(p.e.b, err)
	return n
}

// drop removes an older peer backup's file (the lsn dir stays: it is small).
func (p *peer) drop(file string) {
	if file != "" {
		_ = os.Remove(file)
	}
}

// rawStream saves one uncompressed stream.
func (p *peer) rawStream(path string) {
	d := p.next()
	must(p.e.b, os.MkdirAll(filepath.Dir(path), 0o755))
	var s sample
	p.e.shell(fmt.Sprintf("%s 2>/dev/null > %s.part && mv %s.part %s", p.backupCmd(d, ""), path, path, path), &s)
}

// restore unpacks, prepares and moves back a peer full into datadir, and
// returns the time of each step.
func (p *peer) restore(file, datadir string) (extract, prepare, moveBack float64) {
	x := datadir + ".x"
	must(p.e.b, os.MkdirAll(x, 0o700))
	var s sample
	p.e.shell(fmt.Sprintf("%s -dc %s | %s -x -C %s", p.e.tools.zstd, file, p.e.tools.mbstream, x), &s)
	extract = s.Seconds
	// The memory Strata's prepare takes by default on this host.
	p.e.shell(fmt.Sprintf("%s --prepare --use-memory=%d --target-dir=%s 2>%s.prepare.log", p.e.tools.mariabackup, physical.PrepareMemory(0), x, x), &s)
	prepare = s.Seconds
	p.e.shell(fmt.Sprintf("%s --move-back --target-dir=%s --datadir=%s 2>%s.move.log", p.e.tools.mariabackup, x, datadir, x), &s)
	moveBack = s.Seconds
	_ = os.RemoveAll(x)
	return
}

// ---- sections

func benchFull(b *testing.B, e *env, p *peer, res *results) {
	sec := res.section("full backup", "idle server; Strata through the CLI, workflow to manifest; peer: one shell pipeline to a file")
	for r := 0; r < *nRuns; r++ {
		for _, level := range []int{1, 3} {
			order := []bool{true, false}
			if (r+level)%2 == 1 {
				order = []bool{false, true}
			}
			for _, strata := range order {
				if strata {
					s := e.strataBackup(fmt.Sprintf("dbz%d", level), "full", "full")
					m := sec.method(fmt.Sprintf("strata zstd-%d", level), false, fmt.Sprintf("strata backup dbz%d --wait", level))
					m.Runs = append(m.Runs, s)
				} else {
					s := p.full(level, "")
					m := sec.method(fmt.Sprintf("mariabackup | zstd -T2 -%d", level), true,
						fmt.Sprintf("mariabackup --backup --stream=xbstream | zstd -T2 -%d > file", level))
					m.Runs = append(m.Runs, s)
				}
			}
		}
	}
}

func (e *env) writes(ds dataset, d time.Duration) []second {
	return e.startLoad(4, d, ds.tables, ds.rows).wait(e.b)
}

func benchIncremental(b *testing.B, e *env, p *peer, res *results, ds dataset, level int) {
	sec := res.section("incremental backup", "after 5 s of the write load; each from its own previous backup")
	e.strataBackup("db1", "full", "incbase")
	p.full(level, "")
	for r := 0; r < *nRuns; r++ {
		e.writes(ds, 5*time.Second)
		for _, strata := range []bool{r%2 == 0, r%2 == 1} {
			if strata {
				s := e.strataBackup("db1", "incremental", "inc")
				sec.add(s, "strata incremental", false, "strata backup db1 --type incremental --wait")
			} else {
				s, out := p.backup(level, "--incremental-basedir="+p.lsnDir)
				_ = os.Remove(out)
				m := sec.method("mariabackup --incremental-basedir | zstd", true,
					fmt.Sprintf("mariabackup --backup --stream=xbstream --incremental-basedir=DIR | zstd -T2 -%d > file", level))
				m.Runs = append(m.Runs, s)
			}
		}
	}
}

func benchRestore(b *testing.B, e *env, p *peer, res *results, level int) {
	sec := res.section("restore to a started server", "full backup of the data set, restored to a new datadir, server started and answering")
	e.strataBackup("db1", "full", "restore")
	id := e.lastBackup["db1"]
	p.full(level, "")
	file := p.lastOut
	for r := 0; r < *nRuns; r++ {
		for _, strata := range []bool{r%2 == 0, r%2 == 1} {
			base := filepath.Join(e.dir, fmt.Sprintf("restore-%d-%v", r, strata))
			must(b, os.MkdirAll(base, 0o700))
			datadir := filepath.Join(base, "data")
			if strata {
				port, err := testdb.FreePort()
				must(b, err)
				m := e.meter()
				out, err := e.cli("restore", "db1", "--backup", id, "--target-dir", datadir, "--start", "--port", strconv.Itoa(port), "--wait", "--json")
				var s sample
				m.stop(&s)
				must(b, err)
				var rr workflows.RestoreResult
				if err := json.Unmarshal(out, &rr); err != nil {
					b.Fatalf("restore result: %v\n%s", err, out)
				}
				s.RawBytes = rr.Stats.RawBytes
				s.set("fetch_seconds", rr.Stats.FetchSeconds)
				s.set("prepare_seconds", rr.Stats.PrepareSeconds)
				s.set("move_back_seconds", rr.Stats.MoveBackSeconds)
				if rr.Server != nil {
					s.set("start_seconds", rr.Server.StartSeconds)
					sctx, cancel := context.WithTimeout(e.ctx, time.Minute)
					_ = server.Stop(sctx, &server.Started{PID: rr.Server.PID})
					cancel()
				}
				sec.add(s, "strata restore --start", false, "strata restore db1 --backup ID --target-dir DIR --start --wait")
			} else {
				t0 := time.Now()
				x, pr, mb := p.restore(file, datadir)
				t1 := time.Now()
				srv, err := testdb.StartExisting(e.ctx, datadir, testdb.Options{Password: e.password, BaseDir: base})
				if err != nil {
					b.Fatalf("start the manually restored server: %v", err)
				}
				s := sample{Seconds: time.Since(t0).Seconds()}
				s.set("fetch_seconds", x)
				s.set("prepare_seconds", pr)
				s.set("move_back_seconds", mb)
				s.set("start_seconds", time.Since(t1).Seconds())
				_ = srv.Stop()
				m := sec.method("manual restore", true, "zstd -dc file | mbstream -x; mariabackup --prepare --use-memory=(Strata's default); --move-back; mariadbd")
				m.Runs = append(m.Runs, s)
			}
			_ = os.RemoveAll(base)
		}
	}
}

func benchStall(b *testing.B, e *env, p *peer, res *results, ds dataset) {
	sec := res.section("write stall", "largest 1-s p100 latency of a 4-thread sysbench write load: over the seconds the backup runs, and over the 8 s before it (idle); ratios are per run, medians")
	methods := []string{"strata full", "mariabackup | zstd (1 s log copy)", "mariabackup --log-copy-interval=100 | zstd"}
	for r := 0; r < *nRuns; r++ {
		for i := range methods {
			name := methods[(i+r)%len(methods)]
			l := e.startLoad(4, 10*time.Minute, ds.tables, ds.rows)
			time.Sleep(3 * time.Second) // the load reaches its pace
			idleFrom := time.Since(l.t0)
			time.Sleep(8 * time.Second)
			from := time.Since(l.t0)
			var s sample
			switch name {
			case "strata full":
				s = e.strataBackup("db1", "full", "stall")
			case "mariabackup | zstd (1 s log copy)":
				s = p.full(1, "")
			default:
				s = p.full(1, "--log-copy-interval=100")
			}
			to := time.Since(l.t0)
			time.Sleep(1500 * time.Millisecond)
			secs := l.stop(b)
			idle, stall := maxIn(secs, idleFrom, from), maxIn(secs, from, to)
			s.set("idle_max_latency_ms", idle)
			s.set("max_latency_ms", stall)
			if idle > 0 {
				s.set("stall_over_idle", stall/idle)
			}
			tps, n := 0.0, 0
			for _, x := range secs {
				if x.End > from && x.End-time.Second < to {
					tps += x.TPS
					n++
				}
			}
			if n > 0 {
				s.set("tps", tps/float64(n))
			}
			sec.add(s, name, name != "strata full", "")
		}
	}
}

func benchPITR(b *testing.B, e *env, p *peer, res *results, ds dataset, rpool string) {
	sec := res.section("pitr replay", fmt.Sprintf("%s of the write load replayed onto the full backup taken before it; replay servers' buffer pool %s", *writeFor, rpool))
	lagSec := res.section("binlog archive lag", "strata_archive_lag_seconds of the agent, sampled every 250 ms during the PITR write loads")
	lagM := lagSec.method("strata archiver", false, "")
	for r := 0; r < *nRuns; r++ {
		e.strataBackup("db1", "full", "pitrbase")
		id := e.lastBackup["db1"]
		p.full(1, "")
		file := p.lastOut
		var bfile string
		var bpos int64
		db, err := e.src.DB("")
		must(b, err)
		must(b, db.QueryRow("SHOW MASTER STATUS").Scan(&bfile, &bpos, new(string), new(string)))
		db.Close()

		l := e.startLoad(4, *writeFor, ds.tables, ds.rows)
		var lags []float64
		tick := time.NewTicker(250 * time.Millisecond)
	sampling:
		for {
			select {
			case err := <-l.done:
				l.done <- err
				break sampling
			case <-tick.C:
				if v, ok := e.archiveLag(); ok {
					lags = append(lags, v)
				}
			}
		}
		tick.Stop()
		secs := l.wait(b)
		written := time.Since(l.t0).Seconds()
		if len(secs) > 0 {
			written = secs[len(secs)-1].End.Seconds()
		}
		end := e.sql("SELECT @@gtid_binlog_pos")
		e.waitArchived(end)
		sort.Float64s(lags)
		ls := sample{}
		if len(lags) > 0 {
			q := func(f float64) float64 { return lags[min(len(lags)-1, int(f*float64(len(lags))))] }
			ls.set("lag_p50_seconds", q(0.5))
			ls.set("lag_p99_seconds", q(0.99))
			ls.set("lag_max_seconds", lags[len(lags)-1])
			ls.set("samples", float64(len(lags)))
		}
		lagM.Runs = append(lagM.Runs, ls)

		for _, strata := range []bool{r%2 == 0, r%2 == 1} {
			base := filepath.Join(e.dir, fmt.Sprintf("pitr-%d-%v", r, strata))
			must(b, os.MkdirAll(base, 0o700))
			datadir := filepath.Join(base, "data")
			s := sample{}
			s.set("write_seconds", written)
			if strata {
				m := e.meter()
				out, err := e.cli("restore", "db1", "--backup", id, "--to-gtid", end, "--target-dir", datadir, "--wait", "--json")
				m.stop(&s)
				must(b, err)
				var rr workflows.RestoreResult
				if err := json.Unmarshal(out, &rr); err != nil {
					b.Fatalf("restore result: %v\n%s", err, out)
				}
				if rr.Replay == nil || rr.Replay.LastGTID != end {
					b.Fatalf("the PITR restore did not end at %s: %s", end, out)
				}
				// The CPU of the whole restore is not comparable with the
				// peer's pipeline alone: not reported.
				s.CPU, s.AgentCPU, s.ToolCPU, s.WorkerCPU = 0, 0, 0, 0
				s.set("replay_seconds", rr.Replay.Seconds)
				s.set("replay_total_seconds", rr.Replay.TotalSeconds)
				s.set("transactions", float64(rr.Replay.Transactions))
				s.set("replay_over_write_time", rr.Replay.Seconds/written)
				sec.add(s, "strata replay", false, "strata restore db1 --to-gtid G --wait (its replay phase)")
			} else {
				p.restore(file, datadir)
				// Relaxed durability, as for any bulk load (Strata's replay
				// server relaxes it too); the binlog stays on, to read the
				// GTID the replay reached.
				srv, err := testdb.StartExisting(e.ctx, datadir, testdb.Options{Password: e.password, BaseDir: base, InnoDBBufferPool: rpool,
					ExtraArgs: []string{"--sync-binlog=0", "--innodb-flush-log-at-trx-commit=2"}})
				if err != nil {
					b.Fatalf("start the peer's replay server: %v", err)
				}
				files := binlogsFrom(b, e.src.Datadir, bfile)
				var ps sample
				e.shell(fmt.Sprintf("%s --start-position=%d %s | %s --no-defaults -uroot -p%s --socket=%s", e.tools.mariadbBinlog, bpos,
					strings.Join(files, " "), e.tools.mariadb, e.password, srv.Socket), &ps)
				got := ""
				if db, err := srv.DB(""); err == nil {
					_ = db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&got)
					db.Close()
				}
				_ = srv.Stop()
				if got != end {
					b.Fatalf("the peer's replay ended at %q, want %q", got, end)
				}
				s.set("replay_seconds", ps.Seconds)
				s.set("replay_over_write_time", ps.Seconds/written)
				sec.add(s, "mariadb-binlog | mariadb", true, "mariadb-binlog --start-position=P FILES | mariadb (server with the same buffer pool, sync_binlog=0, innodb_flush_log_at_trx_commit=2)")
			}
			_ = os.RemoveAll(base)
		}
	}
}

// binlogsFrom lists the source's binlog files from first on.
func binlogsFrom(b *testing.B, datadir, first string) []string {
	m, err := filepath.Glob(filepath.Join(datadir, "binlog.[0-9]*"))
	must(b, err)
	sort.Strings(m)
	var out []string
	for _, f := range m {
		if filepath.Base(f) >= first {
			out = append(out, f)
		}
	}
	return out
}

// waitArchived waits until the archive holds gtid.
func (e *env) waitArchived(gtid string) {
	deadline := time.Now().Add(2 * time.Minute)
	var out []byte
	var err error
	for time.Now().Before(deadline) {
		out, err = e.cli("archive", "status", "db1", "--json")
		if err == nil {
			var st struct {
				Last *struct {
					LastGTID string `json:"last_gtid"`
				} `json:"last_segment"`
			}
			if json.Unmarshal(out, &st) == nil && st.Last != nil && st.Last.LastGTID == gtid {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	e.b.Fatalf("the archive did not reach %s within 2 minutes: %v\n%s", gtid, err, tail(string(out), 40))
}

// stop ends a load early and returns its reports.
func (l *load) stop(b *testing.B) []second {
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	err := <-l.done
	var ee *exec.ExitError
	if err != nil && !(asExit(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled()) {
		b.Fatalf("sysbench: %v\n%s", err, tail(l.out.String(), 20))
	}
	l.done <- nil
	return l.wait(b)
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}
