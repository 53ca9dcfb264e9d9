package replay

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/benchload"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/testdb"
)

// BenchmarkReplay writes for 20 s with 4 threads, archives the binlog, and
// applies it to a copy of the datadir taken before the writes three ways:
// Strata's replica method (relay logs + parallel applier), Strata's client
// method (mariadb-binlog | mariadb, relaxed durability), and the classic
// mariadb-binlog | mariadb into a server with default durability. Its
// 50,000-row table fits in the replay server's buffer pool, so it measures
// the applier alone; BenchmarkReplayLarge measures a data set four times the
// pool.
func BenchmarkReplay(b *testing.B) {
	src := testdb.ForTest(b, testdb.Options{})
	db, err := src.DB("")
	if err != nil {
		b.Fatal(err)
	}
	const rows = 50000
	if err := benchload.Prepare(context.Background(), db, "sb", rows); err != nil {
		b.Fatal(err)
	}
	db.Close()
	// The base: the datadir before the writes (as a restored backup would be).
	if err := src.Stop(); err != nil {
		b.Fatal(err)
	}
	base := filepath.Join(b.TempDir(), "base")
	if out, err := exec.Command("cp", "-a", src.Datadir, base).CombinedOutput(); err != nil {
		b.Fatalf("copy datadir: %v %s", err, out)
	}
	src, err = testdb.StartExisting(context.Background(), src.Datadir, testdb.Options{Password: src.Password})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = src.Stop() })
	db, err = src.DB("")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var file string
	var pos uint32
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, new(string), new(string)); err != nil {
		b.Fatal(err)
	}
	const threads, dur = 4, 20 * time.Second
	t0 := time.Now()
	commits, err := benchload.Run(context.Background(), db, "sb", rows, threads, dur, 0)
	if err != nil {
		b.Fatal(err)
	}
	writeSecs := time.Since(t0).Seconds()
	var lastGTID string
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&lastGTID); err != nil {
		b.Fatal(err)
	}

	st := &binlog.Store{B: memory.New(), Instance: "bench"}
	if _, err := binlog.Run(context.Background(), st, db, binlog.Source{Host: "127.0.0.1", Port: uint16(src.Port), User: "root",
		Password: src.Password, Flavor: "mariadb", ReplicaID: 4000000078}, binlog.Options{RunFor: 5 * time.Second}); err != nil {
		b.Fatal(err)
	}
	ix, err := st.ReadIndex(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	segs, err := ix.Covering(file, pos)
	if err != nil {
		b.Fatal(err)
	}
	build := func() *binlog.Built {
		built, err := binlog.Build(context.Background(), st, segs, file, pos, binlog.Target{GTID: lastGTID}, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return built
	}
	copyBase := func(name string) string {
		d := filepath.Join(b.TempDir(), name)
		if out, err := exec.Command("cp", "-a", base, d).CombinedOutput(); err != nil {
			b.Fatalf("copy base: %v %s", err, out)
		}
		return d
	}
	checksum := func(datadir string) string {
		s, err := testdb.StartExisting(context.Background(), datadir, testdb.Options{Password: src.Password})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Stop()
		d, err := s.DB("")
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		var t, c string
		if err := d.QueryRow("CHECKSUM TABLE sb.sbtest EXTENDED").Scan(&t, &c); err != nil {
			b.Fatal(err)
		}
		return c
	}
	var want string
	if err := db.QueryRow("CHECKSUM TABLE sb.sbtest EXTENDED").Scan(new(string), &want); err != nil {
		b.Fatal(err)
	}

	results := map[string]float64{}
	for _, m := range []string{MethodReplica, MethodClient} {
		built := build()
		dir := copyBase(m)
		res, err := Run(context.Background(), Params{Method: m, Datadir: dir, Files: built.Files, StartPos: built.StartPos, LastGTID: built.LastGTID, Threads: 4})
		if err != nil {
			b.Fatalf("%s: %v", m, err)
		}
		if got := checksum(dir); got != want {
			b.Fatalf("%s: replayed table checksum %s, source %s", m, got, want)
		}
		results[m] = res.Seconds
	}
	// The classic way: a server as restored (default durability), fed by the client.
	built := build()
	dir := copyBase("classic")
	s, err := testdb.StartExisting(context.Background(), dir, testdb.Options{Password: src.Password, ExtraArgs: []string{"--skip-log-bin"}})
	if err != nil {
		b.Fatal(err)
	}
	t1 := time.Now()
	err = physical.ReplayWithClient(context.Background(), physical.ReplayParams{Files: built.Files, StartPos: built.StartPos,
		Endpoint: mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", s.Port), User: "root", Password: src.Password}})
	results["classic"] = time.Since(t1).Seconds()
	_ = s.Stop()
	if err != nil {
		b.Fatal(err)
	}
	if got := checksum(dir); got != want {
		b.Fatalf("classic: checksum %s, source %s", got, want)
	}

	b.ReportMetric(writeSecs, "write_s")
	b.ReportMetric(results[MethodReplica], "replica_s")
	b.ReportMetric(results[MethodClient], "client_s")
	b.ReportMetric(results["classic"], "classic_s")
	b.Logf("%d transactions written by %d threads in %.1fs; replay: replica method %.1fs (%.2fx the write time), "+
		"client method %.1fs (%.2fx), classic mariadb-binlog | mariadb %.1fs (%.2fx); replica method is %.1fx faster than the classic",
		len(commits), threads, writeSecs, results[MethodReplica], results[MethodReplica]/writeSecs,
		results[MethodClient], results[MethodClient]/writeSecs, results["classic"], results["classic"]/writeSecs,
		results["classic"]/results[MethodReplica])
}
