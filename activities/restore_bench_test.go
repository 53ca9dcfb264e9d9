package activities

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/local"
	"github.com/strata-backup/strata/internal/testdb"
)

// BenchmarkRestoreVsManual compares, on the same mariabackup stream,
// Strata's restore to an answering server (the RestoreBackup and
// StartServer activities, then a first query) with what a DBA types:
// `zstd -d < file | mbstream -x -C dir`, `mariabackup --prepare
// --use-memory`, `mariabackup --move-back`, start mariadbd, first query.
// Runs are interleaved (Strata, manual, ...) and medians reported.
//
// It needs STRATA_BENCH_STREAM (an xbstream file, e.g. the one
// scripts/bench-dataset.sh builds), STRATA_BENCH_PASSWORD (the root
// password of the streamed server) and STRATA_BENCH_SCRATCH (a work dir;
// the repository and the compressed stream are kept there between runs).
// STRATA_BENCH_RUNS sets the number of pairs (default 3).
//
//	go test -run '^$' -bench RestoreVsManual -benchtime 1x ./activities/
func BenchmarkRestoreVsManual(b *testing.B) {
	stream, scratch := os.Getenv("STRATA_BENCH_STREAM"), os.Getenv("STRATA_BENCH_SCRATCH")
	password := os.Getenv("STRATA_BENCH_PASSWORD")
	if stream == "" || scratch == "" {
		b.Skip("set STRATA_BENCH_STREAM and STRATA_BENCH_SCRATCH")
	}
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("STRATA_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	ctx := context.Background()
	a, m := benchRepo(b, ctx, stream, filepath.Join(scratch, "repo"), password)
	zst := filepath.Join(scratch, "stream.zst")
	if _, err := os.Stat(zst); err != nil {
		run(b, "sh", "-c", fmt.Sprintf("zstd -q -T2 -1 < %q > %q.tmp && mv %q.tmp %q", stream, zst, zst, zst))
	}
	mem := a.prepareMemory("bench")
	b.Logf("backup: %d chunks, %d raw bytes, %d stored; prepare memory %d MiB", len(m.Chunks), m.RawSize, m.StoredSize, mem>>20)

	// A pair not counted first: the first restore after the machine did
	// other work pays for the page cache it reclaims.
	benchStrataRestore(b, ctx, a, m, filepath.Join(scratch, "strata"), password)
	benchManualRestore(b, ctx, zst, filepath.Join(scratch, "manual"), password, mem)
	var strata, manual []float64
	b.ResetTimer()
	for i := 0; i < runs; i++ {
		strata = append(strata, benchStrataRestore(b, ctx, a, m, filepath.Join(scratch, "strata"), password))
		manual = append(manual, benchManualRestore(b, ctx, zst, filepath.Join(scratch, "manual"), password, mem))
	}
	b.StopTimer()
	ms, mm := median(strata), median(manual)
	b.Logf("restore to an answering server: strata %v, manual %v; medians %.2fs vs %.2fs, ratio %.2f", strata, manual, ms, mm, ms/mm)
	b.ReportMetric(ms, "strata-s")
	b.ReportMetric(mm, "manual-s")
	b.ReportMetric(ms/mm, "ratio")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func run(b *testing.B, name string, args ...string) {
	b.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// benchRepo returns an agent whose local repository holds a backup of
// stream (uploaded once, then kept in dir), and its manifest.
func benchRepo(b *testing.B, ctx context.Context, stream, dir, password string) (*Agent, *manifest.Manifest) {
	b.Helper()
	b.Setenv("STRATA_BENCH_PW", password)
	par := 2
	if n, err := strconv.Atoi(os.Getenv("STRATA_BENCH_PARALLELISM")); err == nil && n > 0 {
		par = n
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
storage: {local: {root: %q}}
instances: [{id: bench, host: h1, connect: {address: "127.0.0.1:1", user: root, password_env: STRATA_BENCH_PW}, datadir: /nonexistent,
  encryption: {enabled: false}, backup: {parallelism: %d}}]`, dir, par)))
	if err != nil {
		b.Fatal(err)
	}
	be, err := local.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	a := &Agent{Host: "h1", Config: cfg, Repo: repo.New(be)}
	if m, err := a.Repo.ReadManifest(ctx, "bench", "full1"); err == nil {
		return a, m
	}
	f, err := os.Open(stream)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	in, _ := cfg.Instance("bench")
	up, err := pipeline.Upload(ctx, be, repo.BackupPrefix("bench", "full1"), f, pipeline.UploadOptions{
		ChunkSize: int64(in.Backup.ChunkSize), Codec: "zstd", Level: 1})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	m := &manifest.Manifest{FormatVersion: manifest.FormatVersion, BackupID: "full1", Instance: "bench", Type: manifest.TypeFull,
		Tool: "mariabackup", StartTime: now, EndTime: now, ConsistentAt: now, ToLSN: 1, LastLSN: 1,
		RawSize: up.RawSize, StoredSize: up.StoredSize, RawSHA256: up.RawSHA256, Compression: up.Codec, CompressionLevel: up.Level,
		ChunkSize: up.ChunkSize, Chunks: up.Chunks}
	if err := a.Repo.WriteManifest(ctx, m); err != nil {
		b.Fatal(err)
	}
	return a, m
}

func benchStrataRestore(b *testing.B, ctx context.Context, a *Agent, m *manifest.Manifest, dir, password string) float64 {
	b.Helper()
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "data")
	port, err := testdb.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	env.RegisterActivity(a.RestoreBackup)
	env.RegisterActivity(a.StartServer)
	t0 := time.Now()
	val, err := env.ExecuteActivity(a.RestoreBackup, RestoreParams{Instance: "bench", BackupID: m.BackupID, Chain: []string{m.BackupID}, TargetDir: target})
	if err != nil {
		b.Fatal(err)
	}
	var st RestoreStats
	_ = val.Get(&st)
	t1 := time.Now()
	val, err = env.ExecuteActivity(a.StartServer, StartServerParams{Instance: "bench", TargetDir: target, Port: port})
	if err != nil {
		b.Fatal(err)
	}
	var srv StartServerResult
	_ = val.Get(&srv)
	defer stopServer(srv.PID)
	firstQuery(b, ctx, port, password, time.Millisecond)
	total := time.Since(t0).Seconds()
	fmt.Fprintf(os.Stderr, "strata: %.2fs = restore %.2fs (fetch %.2f, prepare %.2f, move-back %.2f) + start %.2fs (activity %.2f) + first query\n",
		total, t1.Sub(t0).Seconds(), st.FetchSeconds, st.PrepareSeconds, st.MoveBackSeconds, time.Since(t1).Seconds(), srv.StartSeconds)
	return total
}

func benchManualRestore(b *testing.B, ctx context.Context, zst, dir, password string, mem int64) float64 {
	b.Helper()
	_ = os.RemoveAll(dir)
	bk, data := filepath.Join(dir, "backup"), filepath.Join(dir, "data")
	if err := os.MkdirAll(bk, 0o700); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	port, err := testdb.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	run(b, "sh", "-c", fmt.Sprintf("zstd -q -d < %q | mbstream -x -C %q", zst, bk))
	t1 := time.Now()
	run(b, "mariabackup", "--no-defaults", "--prepare", "--target-dir="+bk, "--use-memory="+strconv.FormatInt(mem, 10))
	t2 := time.Now()
	run(b, "mariabackup", "--no-defaults", "--move-back", "--target-dir="+bk, "--datadir="+data)
	t3 := time.Now()
	sock := filepath.Join(dir, "s.sock")
	cmd := exec.Command("/usr/sbin/mariadbd", "--no-defaults", "--datadir="+data, "--socket="+sock, "--port="+strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--log-error="+filepath.Join(dir, "err.log"))
	if u, err := user.Current(); err == nil {
		cmd.Args = append(cmd.Args, "--user="+u.Username)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	defer stopServer(cmd.Process.Pid)
	firstQuery(b, ctx, port, password, 20*time.Millisecond)
	total := time.Since(t0).Seconds()
	fmt.Fprintf(os.Stderr, "manual: %.2fs = extract %.2f + prepare %.2f + move-back %.2f + start and first query %.2f\n",
		total, t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t3.Sub(t2).Seconds(), time.Since(t3).Seconds())
	return total
}

// firstQuery waits, polling every interval, until the server on port
// answers a query on the restored data.
func firstQuery(b *testing.B, ctx context.Context, port int, password string, interval time.Duration) {
	b.Helper()
	ep := mysqlx.Endpoint{Address: "127.0.0.1:" + strconv.Itoa(port), User: "root", Password: password}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		db, err := mysqlx.Open(ctx, ep)
		if err == nil {
			var n int
			err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sbtest.sbtest1 WHERE id <= 10").Scan(&n)
			db.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("server on port %d does not answer: %v", port, err)
		}
		time.Sleep(interval)
	}
}

func stopServer(pid int) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}
