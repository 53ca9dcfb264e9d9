package logical_test

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
)

// lastSeq is the transaction count a one-source GTID state says: the last
// number of "0-1-N" or "uuid:1-N".
func lastSeq(t *testing.T, gtid string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(\d+)\s*$`).FindStringSubmatch(gtid)
	require.NotNil(t, m, "gtid %q", gtid)
	n, err := strconv.ParseInt(m[1], 10, 64)
	require.NoError(t, err)
	return n
}

func gtidNow(t *testing.T, db *sql.DB, fl flavor.Name) string {
	t.Helper()
	q := "SELECT @@gtid_binlog_pos"
	if fl == flavor.MySQL {
		q = "SELECT @@gtid_executed"
	}
	var g string
	require.NoError(t, db.QueryRow(q).Scan(&g))
	return g
}

// A dump taken while writers commit transactions that each insert into
// two tables is an exact snapshot: every transaction's rows are in both
// tables or in neither, and their number is what the dump's GTID set says.
func TestDumpConsistentUnderWrites(t *testing.T) {
	forFlavors(t, func(t *testing.T, fl flavor.Name) {
		ctx := context.Background()
		_, db := startServer(t, fl)
		execAll(t, db,
			"CREATE DATABASE w",
			"CREATE TABLE w.a (id INT AUTO_INCREMENT PRIMARY KEY, k BIGINT NOT NULL, pad VARCHAR(50) NOT NULL) ENGINE=InnoDB",
			"CREATE TABLE w.b (id INT AUTO_INCREMENT PRIMARY KEY, k BIGINT NOT NULL) ENGINE=InnoDB")
		g0 := lastSeq(t, gtidNow(t, db, fl))

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var commits atomic.Int64
		errs := make(chan error, 4)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					k := int64(w)*1_000_000 + int64(i)
					tx, err := db.BeginTx(ctx, nil)
					if err == nil {
						_, err = tx.Exec("INSERT INTO w.a (k, pad) VALUES (?, 'pppp')", k)
					}
					if err == nil {
						_, err = tx.Exec("INSERT INTO w.b (k) VALUES (?)", k)
					}
					if err == nil {
						err = tx.Commit()
					}
					if err != nil {
						errs <- err
						return
					}
					commits.Add(1)
				}
			}(w)
		}
		time.Sleep(700 * time.Millisecond)
		dir := t.TempDir()
		before := commits.Load()
		res, err := logical.Dump(ctx, db, &logical.DirSink{Dir: dir}, logical.DumpOptions{FileSize: 8 << 10, StatementSize: 2 << 10})
		during := commits.Load() - before
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.NoError(t, err)

		tuple := regexp.MustCompile(`\((\d+),(\d+)(?:,'pppp')?\)`)
		keys := func(table string) map[string]bool {
			out := map[string]bool{}
			for _, l := range dataLines(t, dir, res.Index, "w", table) {
				for _, m := range tuple.FindAllStringSubmatch(l, -1) {
					require.False(t, out[m[2]], "row %s twice in %s", m[2], table)
					out[m[2]] = true
				}
			}
			return out
		}
		a, b := keys("a"), keys("b")
		var onlyA, onlyB []string
		for k := range a {
			if !b[k] {
				onlyA = append(onlyA, k)
			}
		}
		for k := range b {
			if !a[k] {
				onlyB = append(onlyB, k)
			}
		}
		require.Empty(t, onlyA, "transactions half in the dump (rows in a only)")
		require.Empty(t, onlyB, "transactions half in the dump (rows in b only)")
		txns := lastSeq(t, res.GTIDSet) - g0
		require.EqualValues(t, txns, len(a), "rows in the dump vs transactions in its GTID set %s", res.GTIDSet)

		var final int
		require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM w.a").Scan(&final))
		require.Greater(t, final, len(a), "writers went on after the consistent point")
		require.Positive(t, len(a))
		parts := 0
		for _, f := range res.Index.Files {
			if f.Kind == logical.KindData && f.Object == "a" {
				parts++
			}
		}
		t.Logf("%s: %d transactions in the dump (%d data files of a), %d commits during the dump, lock held %v, gtid %s",
			fl, len(a), parts, during, res.LockDuration, res.GTIDSet)
		require.Positive(t, during, "commits went on during the dump")
	})
}

// Big tables are cut into key ranges that all workers share: an integer
// key (dense: ranges of values; sparse: walked), a character key in a
// case-insensitive collation, a composite key. The ranges chain from
// unbounded to unbounded, and each one's bound literals select exactly
// its rows, as a loader resuming uses them, whatever the connection's
// character set.
func TestDumpSplitsTablesAcrossWorkers(t *testing.T) {
	forFlavors(t, func(t *testing.T, fl flavor.Name) {
		ctx := context.Background()
		srv, db := startServer(t, fl)
		execAll(t, db,
			"CREATE DATABASE s",
			"CREATE TABLE s.dense (id INT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB",
			"CREATE TABLE s.sparse (id BIGINT UNSIGNED PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB",
			"CREATE TABLE s.chars (k VARCHAR(40) NOT NULL PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB "+
				"DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
			"CREATE TABLE s.comp (a INT NOT NULL, b VARCHAR(10) NOT NULL, pad VARCHAR(200), PRIMARY KEY (a, b)) ENGINE=InnoDB",
			"CREATE TABLE s.heap (a INT, pad VARCHAR(200)) ENGINE=InnoDB")
		const n = 6000
		pad := strings.Repeat("x", 150)
		prefixes := []string{"a", "B", "c", "D", "é", "F"}
		for start := 0; start < n; start += 500 {
			var d, sp, ch, co, he []string
			for i := start; i < start+500; i++ {
				d = append(d, fmt.Sprintf("(%d,'%s')", i+1, pad))
				sp = append(sp, fmt.Sprintf("(%d,'%s')", uint64(i)*1_000_003+18_000_000_000_000_000_000, pad))
				ch = append(ch, fmt.Sprintf("('%s%05d','%s')", prefixes[i%len(prefixes)], i, pad))
				co = append(co, fmt.Sprintf("(%d,'%s','%s')", i%50, fmt.Sprintf("%c%d", 'A'+i%3, i), pad))
				he = append(he, fmt.Sprintf("(%d,'%s')", i%7, pad))
			}
			execAll(t, db,
				"INSERT INTO s.dense VALUES "+strings.Join(d, ","),
				"INSERT INTO s.sparse VALUES "+strings.Join(sp, ","),
				"INSERT INTO s.chars VALUES "+strings.Join(ch, ","),
				"INSERT INTO s.comp VALUES "+strings.Join(co, ","),
				"INSERT INTO s.heap VALUES "+strings.Join(he, ","))
		}
		execAll(t, db, "ANALYZE TABLE s.dense, s.sparse, s.chars, s.comp, s.heap")
		dir := t.TempDir()
		sink := newRecordingSink(dir, 30*time.Millisecond)
		// The first data file of each split table waits (up to 10 s) for
		// a second one of the same table to be stored at the same time:
		// only a dump that gives one table's ranges to both workers gets
		// one, however busy the machine is.
		var hmu sync.Mutex
		second := map[string]chan struct{}{}
		sink.hook = func(f *logical.File) {
			if f.Kind != logical.KindData || f.Object == "heap" {
				return
			}
			hmu.Lock()
			ch, seen := second[f.Object]
			if !seen {
				ch = make(chan struct{})
				second[f.Object] = ch
			}
			hmu.Unlock()
			if !seen {
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
				}
				return
			}
			hmu.Lock()
			select {
			case <-ch:
			default:
				close(ch)
			}
			hmu.Unlock()
		}
		res, err := logical.Dump(ctx, db, sink, logical.DumpOptions{Parallelism: 2, FileSize: 64 << 10,
			Include: []string{"s.*"}, Exclude: []string{"s.none*"}})
		require.NoError(t, err)

		// The loader's view: a NAMES binary connection; and one in latin1,
		// where only the character set introducer of a bound keeps its
		// utf8mb4 bytes from being read as latin1.
		conns := map[string]*sql.Conn{}
		for _, cs := range []string{"binary", "latin1"} {
			conn, err := db.Conn(ctx)
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.ExecContext(ctx, "SET NAMES "+cs)
			require.NoError(t, err)
			conns[cs] = conn
		}

		files := map[string][]logical.File{}
		meta := map[string]*logical.TableMeta{}
		for _, f := range res.Index.Files {
			switch f.Kind {
			case logical.KindData:
				files[f.Object] = append(files[f.Object], f)
			case logical.KindTable:
				meta[f.Object] = f.Table
			}
			require.NotEqual(t, "mysql", f.Schema)
		}
		require.Len(t, meta, 5, "only schema s")
		for _, table := range []string{"dense", "sparse", "chars", "comp"} {
			fs := files[table]
			m := meta[table]
			require.Greater(t, len(fs), 4, "%s: split into ranges", table)
			require.Equal(t, len(fs), m.Parts)
			require.EqualValues(t, n, m.Rows)
			require.Nil(t, fs[0].Range.Lower, table)
			require.Nil(t, fs[len(fs)-1].Range.Upper, table)
			var total int64
			for i, f := range fs {
				require.NotNil(t, f.Range, "%s part %d", table, i)
				if i > 0 {
					require.Equal(t, fs[i-1].Range.Upper, f.Range.Lower, "%s: ranges chain", table)
				}
				require.LessOrEqual(t, f.Size, int64(3*64<<10), "%s part %d: %d bytes", table, i, f.Size)
				var conds []string
				if f.Range.Lower != nil {
					conds = append(conds, "("+strings.Join(quoteAll(m.PrimaryKey), ",")+") > ("+strings.Join(f.Range.Lower, ",")+")")
				}
				if f.Range.Upper != nil {
					conds = append(conds, "("+strings.Join(quoteAll(m.PrimaryKey), ",")+") <= ("+strings.Join(f.Range.Upper, ",")+")")
				}
				q := "SELECT COUNT(*) FROM s." + table
				if len(conds) > 0 {
					q += " WHERE " + strings.Join(conds, " AND ")
				}
				for cs, conn := range conns {
					var c int64
					require.NoError(t, conn.QueryRowContext(ctx, q).Scan(&c), q)
					require.Equal(t, f.Rows, c, "%s part %d: rows of its range on a %s connection: %s", table, i, cs, q)
				}
				total += f.Rows
			}
			require.EqualValues(t, n, total)
			require.Equal(t, 2, sink.maxIn["s."+table], "%s: both workers dumped parts of it at once", table)
		}
		// A table without a key: one worker, files cut by size, no Range.
		heap := files["heap"]
		require.Greater(t, len(heap), 4)
		for _, f := range heap {
			require.Nil(t, f.Range)
		}
		require.Equal(t, 1, sink.maxIn["s.heap"])
		require.Empty(t, meta["heap"].PrimaryKey)

		// Loaded by hand, the data is the same.
		tgt, tdb := startServerOpts(t, testdbOptions(fl, srv.Password))
		loadByHand(t, tgt, dir, res.Index)
		for _, table := range []string{"dense", "sparse", "chars", "comp", "heap"} {
			require.Equal(t, rowsOf(t, db, "CHECKSUM TABLE s."+table), rowsOf(t, tdb, "CHECKSUM TABLE s."+table), table)
		}
	})
}
