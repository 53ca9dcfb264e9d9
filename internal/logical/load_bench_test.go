package logical

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/testdb"
)

// sysbenchFixture is a dump of tables shaped like sysbench's sbtest, cut
// into data files of about fileSize bytes with INSERTs of about stmtSize.
func sysbenchFixture(tables, rows int, fileSize, stmtSize int) *fixture {
	fx := newFixture()
	fx.object(KindDatabase, "sb", "", "/*!40101 SET NAMES utf8mb4 */", "CREATE DATABASE `sb`")
	rnd := rand.New(rand.NewSource(1))
	digits := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			if i > 0 && i%12 == 11 {
				b.WriteByte('-')
				continue
			}
			b.WriteByte(byte('0' + rnd.Intn(10)))
		}
		return b.String()
	}
	for t := 1; t <= tables; t++ {
		name := fmt.Sprintf("sbtest%d", t)
		create := "CREATE TABLE `" + name + "` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `k` int(11) NOT NULL DEFAULT 0,\n" +
			"  `c` char(120) NOT NULL DEFAULT '',\n  `pad` char(60) NOT NULL DEFAULT '',\n  PRIMARY KEY (`id`),\n  KEY `k_1` (`k`)\n" +
			") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
		meta := &TableMeta{Engine: "InnoDB", Columns: []string{"id", "k", "c", "pad"}, PrimaryKey: []string{"id"},
			DeferredIndexes: []string{"KEY `k_1` (`k`)"}, Rows: int64(rows)}
		fx.add(File{Name: "sb/" + name + ".table.sql", Kind: KindTable, Schema: "sb", Object: name, Table: meta}, testObjectFile("/*!40101 SET NAMES utf8mb4 */", create))
		var file, stmt bytes.Buffer
		part, inFile, lastKey := 0, 0, ""
		flushStmt := func() {
			if stmt.Len() > 0 {
				stmt.WriteString(";\n")
				file.Write(stmt.Bytes())
				stmt.Reset()
			}
		}
		flushFile := func(upper string, last bool) {
			flushStmt()
			f := File{Name: fmt.Sprintf("sb/%s.%05d.sql", name, part), Kind: KindData, Schema: "sb", Object: name, Part: part, Rows: int64(inFile), Range: &Range{}}
			if lastKey != "" {
				f.Range.Lower = []string{lastKey}
			}
			if !last {
				f.Range.Upper = []string{upper}
			}
			fx.add(f, append([]byte("/*!40101 SET NAMES binary */;\n"), file.Bytes()...))
			file.Reset()
			part++
			inFile = 0
			lastKey = upper
		}
		for id := 1; id <= rows; id++ {
			if stmt.Len() == 0 {
				stmt.WriteString("INSERT INTO `" + name + "` (`id`,`k`,`c`,`pad`) VALUES ")
			} else {
				stmt.WriteByte(',')
			}
			fmt.Fprintf(&stmt, "(%d,%d,'%s','%s')", id, rnd.Intn(rows)+1, digits(119), digits(59))
			inFile++
			if stmt.Len() >= stmtSize {
				flushStmt()
			}
			if file.Len()+stmt.Len() >= fileSize && id < rows {
				flushFile(fmt.Sprint(id), false)
			}
		}
		flushFile("", true)
		meta.Parts = part
	}
	return fx
}

// BenchmarkLoad measures Load against the mariadb client fed the same
// files one after the other (what `zstd -dc dump.sql.zst | mariadb` does):
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 1x ./internal/logical/
func BenchmarkLoad(b *testing.B) {
	const tables, rows = 4, 250000
	fx := sysbenchFixture(tables, rows, 32<<20, 1<<20)
	var raw int64
	for _, f := range fx.idx.Files {
		raw += f.Size
	}
	srv := testdb.ForTest(b, testdb.Options{InnoDBBufferPool: "512M"})
	db, err := srv.DB("")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	reset := func() {
		if _, err := db.Exec("DROP DATABASE IF EXISTS sb"); err != nil {
			b.Fatal(err)
		}
	}
	check := func() {
		var n int64
		for t := 1; t <= tables; t++ {
			var c int64
			if err := db.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM sb.sbtest%d", t)).Scan(&c); err != nil {
				b.Fatal(err)
			}
			n += c
		}
		if n != tables*rows {
			b.Fatalf("%d rows loaded, want %d", n, tables*rows)
		}
	}
	for _, c := range []struct {
		name     string
		par      int
		deferIdx bool
	}{{"strata-p2-deferred", 2, true}, {"strata-p2", 2, false}, {"strata-p1-deferred", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(raw)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				reset()
				b.StartTimer()
				start := time.Now()
				res, err := Load(ctx, db, &fx.idx, fx.source(), LoadOptions{Parallelism: c.par, DeferIndexes: c.deferIdx})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				check()
				b.Logf("%s: %d MB in %.1f s (deferred indexes %.1f s)", c.name, raw>>20, time.Since(start).Seconds(), res.IndexTime.Seconds())
				b.StartTimer()
			}
		})
	}
	b.Run("mariadb-client", func(b *testing.B) {
		client, err := testdb.Binary("mariadb")
		if err != nil {
			b.Skip(err)
		}
		var in bytes.Buffer
		in.WriteString("SET SESSION sql_log_bin=0, foreign_key_checks=0, unique_checks=0;\n")
		for _, f := range fx.idx.Files {
			in.Write(fx.files[f.Name])
			if f.Kind != KindData {
				in.WriteString("DELIMITER ;\n")
			}
			if f.Kind == KindDatabase {
				in.WriteString("USE sb;\n")
			}
		}
		b.SetBytes(raw)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			reset()
			b.StartTimer()
			start := time.Now()
			cmd := exec.Command(client, "--no-defaults", "--binary-mode", "-h127.0.0.1", fmt.Sprintf("-P%d", srv.Port), "-uroot", "-p"+srv.Password)
			cmd.Stdin = bytes.NewReader(in.Bytes())
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("mariadb: %v: %s", err, out)
			}
			b.StopTimer()
			check()
			b.Logf("mariadb client: %d MB in %.1f s", raw>>20, time.Since(start).Seconds())
			b.StartTimer()
		}
	})
}
