package logical_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/benchload"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
	"github.com/strata-backup/strata/internal/testdb"
)

// BenchmarkDump dumps sysbench-shaped tables (STRATA_BENCH_TABLES tables,
// default 4, of STRATA_BENCH_ROWS rows, default 250000) with Dump into a
// directory, and in the same run, for comparison, with
// `mariadb-dump --single-transaction` and, when installed, `mydumper`,
// with the same number of threads (2). STRATA_BENCH_TABLES=8
// STRATA_BENCH_ROWS=1100000 STRATA_BENCH_POOL=3G is the 2 GiB set of the
// peer figures in docs/performance.md.
func BenchmarkDump(b *testing.B) {
	tables, rows := envInt("STRATA_BENCH_TABLES", 4), envInt("STRATA_BENCH_ROWS", 250000)
	ctx := context.Background()
	pool := os.Getenv("STRATA_BENCH_POOL") // innodb_buffer_pool_size, default 1G
	if pool == "" {
		pool = "1G"
	}
	srv := testdb.ForTest(b, testdb.Options{Flavor: flavor.MariaDB, InnoDBBufferPool: pool})
	db, err := srv.DB("")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	names := benchload.SysbenchTables(tables)
	for _, n := range names {
		if err := prepareTable(ctx, db, "sb", n, rows); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "ANALYZE TABLE sb."+strings.Join(names, ", sb.")); err != nil {
		b.Fatal(err)
	}
	var raw int64
	if err := db.QueryRowContext(ctx, "SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA='sb'").Scan(&raw); err != nil {
		b.Fatal(err)
	}
	b.Logf("data set: %d tables x %d rows, %d MiB of InnoDB data", tables, rows, raw>>20)

	b.Run("strata", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			start := time.Now()
			res, err := logical.Dump(ctx, db, &logical.DirSink{Dir: dir}, logical.DumpOptions{Parallelism: 2})
			if err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			b.ReportMetric(float64(res.Bytes)/d.Seconds()/(1<<20), "MiB/s")
			b.ReportMetric(float64(res.LockDuration.Microseconds())/1000, "lock-ms")
			b.Logf("strata Dump: %v, %d files, %d MiB, lock %v", d.Round(time.Millisecond), len(res.Index.Files), res.Bytes>>20, res.LockDuration)
		}
	})
	b.Run("mariadb-dump", func(b *testing.B) {
		bin, err := testdb.Binary("mariadb-dump")
		if err != nil {
			b.Skip(err)
		}
		for i := 0; i < b.N; i++ {
			out := filepath.Join(b.TempDir(), "dump.sql")
			start := time.Now()
			cmd := exec.Command("sh", "-c", fmt.Sprintf("%s --no-defaults -h127.0.0.1 -P%d -uroot --password=%s --single-transaction --databases sb > %s",
				bin, srv.Port, srv.Password, out))
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, o)
			}
			fi, _ := os.Stat(out)
			b.Logf("mariadb-dump --single-transaction: %v, %d MiB", time.Since(start).Round(time.Millisecond), fi.Size()>>20)
		}
	})
	b.Run("mydumper", func(b *testing.B) {
		bin, err := testdb.Binary("mydumper")
		if err != nil {
			b.Skip(err)
		}
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			start := time.Now()
			cmd := exec.Command(bin, "-h", "127.0.0.1", "-P", strconv.Itoa(srv.Port), "-u", "root", "-p", srv.Password,
				"-B", "sb", "-t", "2", "-o", dir)
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, o)
			}
			b.Logf("mydumper --threads 2: %v", time.Since(start).Round(time.Millisecond))
		}
	})
}

// prepareTable makes a sysbench table: id, k (indexed), c CHAR(120), pad
// CHAR(60) with random digits.
func prepareTable(ctx context.Context, db execer, schema, name string, rows int) error {
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + schema,
		"CREATE TABLE " + schema + "." + name + " (id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL DEFAULT 0, " +
			"c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k)) ENGINE=InnoDB",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	const batch = 2000
	for i := 0; i < rows; i += batch {
		n := batch
		if rows-i < n {
			n = rows - i
		}
		// Random digits by the server: one statement per batch.
		q := fmt.Sprintf("INSERT INTO %s.%s (k, c, pad) SELECT FLOOR(RAND()*%d), "+
			"LPAD(CONV(FLOOR(RAND()*1e15),10,10),119,'7'), LPAD(CONV(FLOOR(RAND()*1e15),10,10),59,'3') "+
			"FROM (SELECT 1 FROM information_schema.COLUMNS a, information_schema.COLUMNS b LIMIT %d) x", schema, name, rows, n)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
