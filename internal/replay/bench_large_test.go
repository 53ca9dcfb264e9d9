package replay

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/benchload"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

// BenchmarkReplayLarge measures the replay on the sysbench data set of
// scripts/bench-dataset.sh (8 tables sbtest1..8; STRATA_BENCH_DATASET, by
// default .cache/bench/sysbench-2G of the repository, as make bench builds it): a source server with
// a 2 GiB buffer pool on a copy of the set takes a 4-thread write load for
// STRATA_BENCH_WRITE_SECONDS (default 15); its binlog is archived and
// rebuilt; then the writes are replayed onto fresh copies of the set (the
// datadir before the writes, as a restored backup is) with a buffer pool of
// STRATA_BENCH_REPLAY_POOL (default 512M, a quarter of the data), by each
// entry of STRATA_BENCH_REPLAY_RUNS (default "replica,client,peer"; an
// entry may repeat, to interleave): Strata's replica method, Strata's
// client method, and the peer, `mariadb-binlog | mariadb` into a server
// started on the copy as a DBA would (default durability, no binlog). An
// entry "replica+OPTS" adds server options (comma-free, '+'-separated)
// to the replica method, to measure settings. Every result is checked
// exactly: the checksums of the 8 tables equal the source's, and for the
// replica method gtid_slave_pos is the source's last GTID.
// STRATA_BENCH_SOURCE_ARGS are '+'-separated options of the source; by
// default --sync-binlog=0 and --innodb-flush-log-at-trx-commit=2 (a source
// that syncs every commit writes 2.5x fewer transactions here, an easier
// replay); "durable" keeps testdb's sync_binlog=1 and
// innodb_flush_log_at_trx_commit=1.
// STRATA_BENCH_COLD=1 evicts each copy from the host's page cache before
// its replay (fdatasync and POSIX_FADV_DONTNEED on its files only), so that
// the replay reads what the buffer pool misses from the disk.
// STRATA_BENCH_SCRATCH is where the copies go (default the test's temp
// dir); each copy is removed after its run.
func BenchmarkReplayLarge(b *testing.B) {
	set := os.Getenv("STRATA_BENCH_DATASET")
	if set == "" {
		set = filepath.Join("..", "..", ".cache", "bench", "sysbench-2G")
	}
	if _, err := os.Stat(filepath.Join(set, "done")); err != nil {
		b.Skipf("no data set at %s (scripts/bench-dataset.sh builds it): %v", set, err)
	}
	pwb, err := os.ReadFile(filepath.Join(set, "password"))
	if err != nil {
		b.Fatal(err)
	}
	password := strings.TrimSpace(string(pwb))
	writeDur := 15 * time.Second
	if v := os.Getenv("STRATA_BENCH_WRITE_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("STRATA_BENCH_WRITE_SECONDS=%q: want a number of seconds", v)
		}
		writeDur = time.Duration(n) * time.Second
	}
	poolStr := envOr("STRATA_BENCH_REPLAY_POOL", "512M")
	pool, err := parseSize(poolStr)
	if err != nil {
		b.Fatal(err)
	}
	// The source commits without syncing (more transactions in the same
	// time: the harder replay); "durable" keeps testdb's sync per commit.
	sourceArgs := []string{"--sync-binlog=0", "--innodb-flush-log-at-trx-commit=2"}
	switch v := os.Getenv("STRATA_BENCH_SOURCE_ARGS"); v {
	case "":
	case "durable":
		sourceArgs = nil
	default:
		sourceArgs = strings.Split(v, "+")
	}
	runs := strings.Split(envOr("STRATA_BENCH_REPLAY_RUNS", "replica,client,peer"), ",")
	scratch := os.Getenv("STRATA_BENCH_SCRATCH")
	if scratch == "" {
		scratch = b.TempDir()
	}
	work, err := os.MkdirTemp(scratch, "replay-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(work) })
	ctx := context.Background()
	// The set's root@127.0.0.1 is mariadb-install-db's, without the
	// password (bench-dataset.sh's CREATE USER IF NOT EXISTS kept it):
	// resolving 127.0.0.1 to localhost logs in as root@localhost.
	nameResolve := "--skip-name-resolve=OFF"
	copySet := func(name string) string {
		d := filepath.Join(work, name)
		if out, err := exec.Command("cp", "-a", filepath.Join(set, "data"), d).CombinedOutput(); err != nil {
			b.Fatalf("copy the data set: %v %s", err, out)
		}
		// The set's binlog index names its files by absolute path: point
		// it at the copy's own files, never at the shared set.
		logs, _ := filepath.Glob(filepath.Join(d, "binlog.[0-9]*"))
		sort.Strings(logs)
		var idx strings.Builder
		for _, l := range logs {
			fmt.Fprintf(&idx, "./%s\n", filepath.Base(l))
		}
		if err := os.WriteFile(filepath.Join(d, "binlog.index"), []byte(idx.String()), 0o660); err != nil {
			b.Fatal(err)
		}
		return d
	}

	// The source, and the writes.
	srcDir := copySet("source")
	dataBytes := InnoDBBytes(srcDir)
	src, err := testdb.StartExisting(ctx, srcDir, testdb.Options{Password: password, InnoDBBufferPool: "2G", BaseDir: work,
		ExtraArgs: append([]string{nameResolve}, sourceArgs...)})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = src.Stop() }()
	db, err := src.DB("")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tables := benchload.SysbenchTables(8)
	var rows int
	if err := db.QueryRow("SELECT MAX(id) FROM sbtest.sbtest1").Scan(&rows); err != nil {
		b.Fatal(err)
	}
	// Warm the source's pool, as a server that has been running is.
	for i, t := range tables {
		if _, err := db.Exec(fmt.Sprintf("SELECT COUNT(*), SUM(k) FROM sbtest.%s FORCE INDEX (k_%d)", t, i+1)); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Exec(fmt.Sprintf("SELECT COUNT(*) FROM sbtest.%s IGNORE INDEX (k_%d)", t, i+1)); err != nil {
			b.Fatal(err)
		}
	}
	var file string
	var pos uint32
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, new(string), new(string)); err != nil {
		b.Fatal(err)
	}
	const threads = 4
	t0 := time.Now()
	commits, err := benchload.RunTables(ctx, db, "sbtest", tables, rows, threads, writeDur, 0)
	if err != nil {
		b.Fatal(err)
	}
	writeSecs := time.Since(t0).Seconds()
	var lastGTID string
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&lastGTID); err != nil {
		b.Fatal(err)
	}
	st := &binlog.Store{B: memory.New(), Instance: "bench"}
	if _, err := binlog.Run(ctx, st, db, binlog.Source{Host: "127.0.0.1", Port: uint16(src.Port), User: "root",
		Password: password, Flavor: "mariadb", ReplicaID: 4000000079}, binlog.Options{RunFor: 3 * time.Second}); err != nil {
		b.Fatal(err)
	}
	ix, err := st.ReadIndex(ctx)
	if err != nil {
		b.Fatal(err)
	}
	segs, err := ix.Covering(file, pos)
	if err != nil {
		b.Fatal(err)
	}
	builtDir := filepath.Join(work, "built")
	if err := os.Mkdir(builtDir, 0o700); err != nil {
		b.Fatal(err)
	}
	built, err := binlog.Build(ctx, st, segs, file, pos, binlog.Target{GTID: lastGTID}, builtDir)
	if err != nil {
		b.Fatal(err)
	}
	want := checksums(b, db, tables)
	db.Close()
	if err := src.Stop(); err != nil {
		b.Fatal(err)
	}
	_ = os.RemoveAll(srcDir)
	b.Logf("data set %s: %d tables x %d rows, InnoDB files %d MiB; replay buffer pool %s (data / pool = %.1f)",
		set, len(tables), rows, dataBytes>>20, poolStr, float64(dataBytes)/float64(pool))
	b.Logf("writes: %d transactions by %d threads in %.1fs (%.0f/s), %d binlog bytes, last GTID %s; source options %v",
		len(commits), threads, writeSecs, float64(len(commits))/writeSecs, built.Bytes, lastGTID, sourceArgs)

	verify := func(name, dir string, wantGTID bool) {
		s, err := testdb.StartExisting(ctx, dir, testdb.Options{Password: password, InnoDBBufferPool: "2G", BaseDir: work,
			ExtraArgs: []string{"--skip-log-bin", nameResolve}})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Stop()
		d, err := s.DB("")
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		if got := checksums(b, d, tables); got != want {
			b.Fatalf("%s: replayed checksums %s, source %s", name, got, want)
		}
		if wantGTID {
			var g string
			if err := d.QueryRow("SELECT @@gtid_slave_pos").Scan(&g); err != nil {
				b.Fatal(err)
			}
			if g != lastGTID {
				b.Fatalf("%s: gtid_slave_pos %s, source %s", name, g, lastGTID)
			}
		}
	}
	times := map[string][]float64{}
	for i, run := range runs {
		name, opts, _ := strings.Cut(run, "+")
		dir := copySet(fmt.Sprintf("replay-%d", i))
		if os.Getenv("STRATA_BENCH_COLD") != "" {
			evict(b, dir)
		}
		var secs, total float64
		var detail string
		stopPerf := perfRecord(b, os.Getenv("STRATA_BENCH_PERF"), i)
		t1 := time.Now()
		switch name {
		case MethodReplica, MethodClient:
			var args []string
			if opts != "" {
				args = strings.Split(opts, "+")
			}
			res, err := Run(ctx, Params{Method: name, Datadir: dir, Files: built.Files, StartPos: built.StartPos,
				LastGTID: built.LastGTID, Threads: threads, BufferPool: pool, Scratch: work, ServerArgs: args})
			if err != nil {
				b.Logf("replay server log:\n%s", tail(filepath.Join(dir, "strata-server.err"), 30))
				b.Fatalf("%s: %v", run, err)
			}
			secs = res.Seconds
			detail = fmt.Sprintf("server %.1f CPU-s, read %d MiB from storage, wrote %d MiB; pool %s",
				res.Server.CPUSeconds, res.Server.ReadBytes>>20, res.Server.WriteBytes>>20, res.Pool.Rule)
		case "peer":
			s, err := testdb.StartExisting(ctx, dir, testdb.Options{Password: password, InnoDBBufferPool: poolStr, BaseDir: work,
				ExtraArgs: []string{"--skip-log-bin", nameResolve}})
			if err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			err = physical.ReplayWithClient(ctx, physical.ReplayParams{Files: built.Files, StartPos: built.StartPos, ScratchDir: work,
				Endpoint: mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", s.Port), User: "root", Password: password}})
			secs = time.Since(t2).Seconds()
			_ = s.Stop()
			if err != nil {
				b.Fatalf("peer: %v", err)
			}
		default:
			b.Fatalf("STRATA_BENCH_REPLAY_RUNS: %q: use replica, client or peer", run)
		}
		total = time.Since(t1).Seconds()
		stopPerf()
		verify(run, dir, name == MethodReplica)
		_ = os.RemoveAll(dir)
		times[run] = append(times[run], secs)
		b.Logf("%-8s apply %.1fs (%.2fx the write time), with server start/stop %.1fs; exact; %s", run, secs, secs/writeSecs, total, detail)
	}
	peer := median(times["peer"])
	var names []string
	for n := range times {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := median(times[n])
		line := fmt.Sprintf("%-8s median apply %.1fs of %d run(s): %.2fx the write time", n, m, len(times[n]), m/writeSecs)
		if peer > 0 {
			line += fmt.Sprintf(", %.2fx the peer", m/peer)
		}
		b.Log(line)
		b.ReportMetric(m/writeSecs, strings.NewReplacer("+", "_", "=", "_", "-", "_").Replace(n)+"_x_write")
	}
	b.ReportMetric(writeSecs, "write_s")
}

var nonWord = regexp.MustCompile(`\s+`)

// checksums returns the CHECKSUM TABLE of the tables, in one string.
func checksums(b *testing.B, db *sql.DB, tables []string) string {
	q := "CHECKSUM TABLE sbtest." + strings.Join(tables, ", sbtest.")
	rows, err := db.Query(q)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		var c sql.NullString
		if err := rows.Scan(&t, &c); err != nil {
			b.Fatal(err)
		}
		out = append(out, t+"="+c.String)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return nonWord.ReplaceAllString(strings.Join(out, " "), " ")
}

// perfRecord samples the whole host with perf into dir/run-i.data while a
// replay runs, when dir is set (STRATA_BENCH_PERF); the stop function ends it.
func perfRecord(b *testing.B, dir string, i int) func() {
	if dir == "" {
		return func() {}
	}
	cmd := exec.Command("perf", "record", "-a", "-F", "499", "-o", filepath.Join(dir, fmt.Sprintf("run-%d.data", i)))
	if err := cmd.Start(); err != nil {
		b.Fatalf("perf: %v", err)
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
}

// evict writes dir's files out and drops them from the page cache.
func evict(b *testing.B, dir string) {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return err
		}
		const fadvDontNeed = 4
		if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		b.Fatalf("evict %s from the page cache: %v", dir, err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want e.g. 512M or 2G", s)
	}
	return n * mult, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
