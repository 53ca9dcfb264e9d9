package perf

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

var mydumperGzip = flag.Bool("perf.mydumper-gzip", true, "logical section: also run mydumper --compress (gzip), the slow row")

// Row names of the logical sections.
const (
	lStrataDump  = "strata logical"
	lStrataDump3 = "strata logical zstd-3"
	lDumpZstd    = "mariadb-dump | zstd -T2 -3"
	lMydumper    = "mydumper --threads 2"
	lMydumperGz  = "mydumper --threads 2 -c"
	lStrataLoad  = "strata restore --start"
	lLoadZstd    = "zstd -dc | mariadb"
	lMyloader    = "myloader --threads 2"
	logicalDumpS = "logical dump"
	logicalLoadS = "logical load into a fresh server"
)

// logicalTools are the logical peers' binaries.
type logicalTools struct{ dump, mydumper, myloader string }

// benchLogical measures Strata's logical backup and its restore into a new
// datadir beside mariadb-dump | zstd and mydumper/myloader: the dumps
// interleaved in each run, then the loads, each into a fresh server. Every
// loaded server is checked to hold the source's rows (not timed), so a
// method that loads nothing cannot look fast.
func benchLogical(b *testing.B, e *env, p *peer, res *results) {
	lt := logicalTools{dump: tool(b, "mariadb-dump"), mydumper: tool(b, "mydumper"), myloader: tool(b, "myloader")}
	dumpSec := res.section(logicalDumpS, "idle server, schema sbtest; Strata: `strata backup --type logical` through the CLI "+
		"(backup.logical.threads 2; the default codec, and zstd 3), workflow to manifest; peers: one shell pipeline to a file or directory")
	loadSec := res.section(logicalLoadS, "the newest dump of each method loaded into a new datadir; Strata: `strata restore --target-dir "+
		"--start` (initialize, load with 2 connections, secondary indexes deferred, start the restored server), fetch_seconds its "+
		"initialize+load phase (and the peers' init+load); peers: mariadb-install-db and a started server (init_seconds), then the load (load_seconds); "+
		"every target server with the same settings as Strata's load server: 128M buffer pool, no binlog, "+
		"innodb_flush_log_at_trx_commit=1; cpu_seconds includes the target server's")
	res.Host["mydumper"] = strings.TrimSpace(run(b, lt.mydumper, "--version"))
	res.Host["mariadb-dump"] = strings.TrimSpace(run(b, lt.dump, "--version"))
	e.dropIgnoredAccounts()
	want := e.tableCounts(e.src)
	// Warm up: one unmeasured mydumper run reads every table into the
	// source's buffer pool.
	warm := p.next()
	var ws sample
	e.shell(fmt.Sprintf("%s -S %s -u root -p %s -B sbtest -t 2 -o %s", lt.mydumper, e.src.Socket, e.password, filepath.Join(warm, "mydumper")), &ws)
	_ = os.RemoveAll(warm)
	var strataID, dumpFile, mydDir string
	for r := 0; r < *nRuns; r++ {
		dumps := []string{lStrataDump, lDumpZstd, lStrataDump3, lMydumper}
		if *mydumperGzip {
			dumps = append(dumps, lMydumperGz)
		}
		for i := range dumps {
			switch name := dumps[(i+r)%len(dumps)]; name {
			case lStrataDump:
				s := e.strataBackup("db1", "logical", "logical")
				strataID = e.lastBackup["db1"]
				dumpSec.add(s, name, false, "strata backup db1 --type logical --wait")
			case lStrataDump3:
				s := e.strataBackup("dbz3", "logical", "logical")
				dumpSec.add(s, name, false, "strata backup dbz3 --type logical --wait (compression_level 3)")
			case lDumpZstd:
				d := p.next()
				out := filepath.Join(d, "dump.sql.zst")
				var s sample
				e.shell(fmt.Sprintf("%s --defaults-file=%s --single-transaction --routines --events --databases sbtest | %s -q -T2 -3 -c > %s",
					lt.dump, p.cnf, e.tools.zstd, out), &s)
				s.StoredBytes = fileSize(b, out)
				s.RawBytes = p.rawSize(out)
				p.drop(dumpFile)
				dumpFile = out
				dumpSec.add(s, name, true, "mariadb-dump --single-transaction --routines --events --databases sbtest | zstd -T2 -3 > file")
			case lMydumper, lMydumperGz:
				d := p.next()
				out := filepath.Join(d, "mydumper")
				gz := ""
				if name == lMydumperGz {
					gz = " -c"
				}
				var s sample
				e.shell(fmt.Sprintf("%s -S %s -u root -p %s -B sbtest -t 2%s -o %s", lt.mydumper, e.src.Socket, e.password, gz, out), &s)
				s.StoredBytes = dirSize(b, out)
				if gz == "" {
					s.RawBytes = s.StoredBytes
					if mydDir != "" {
						_ = os.RemoveAll(filepath.Dir(mydDir))
					}
					mydDir = out
				} else {
					_ = os.RemoveAll(d)
				}
				dumpSec.add(s, name, true, "mydumper -B sbtest --threads 2"+gz+" -o dir")
			}
		}
	}
	for r := 0; r < *nRuns; r++ {
		loads := []string{lStrataLoad, lLoadZstd, lMyloader}
		for i := range loads {
			name := loads[(i+r)%len(loads)]
			base := filepath.Join(e.dir, fmt.Sprintf("lload-%d-%d", r, i))
			must(b, os.MkdirAll(base, 0o700))
			var s sample
			var got map[string]int64
			switch name {
			case lStrataLoad:
				s, got = e.strataLogicalRestore(strataID, filepath.Join(base, "data"))
				loadSec.add(s, name, false, "strata restore db1 --backup ID --target-dir DIR --start --wait")
			case lLoadZstd:
				s, got = e.peerLoad(base, func(srv *testdb.Server, s *sample) {
					e.shell(fmt.Sprintf("%s -dc %s | %s --no-defaults --binary-mode -uroot -p%s --socket=%s",
						e.tools.zstd, dumpFile, e.tools.mariadb, e.password, srv.Socket), s)
				})
				loadSec.add(s, name, true, "zstd -dc dump.sql.zst | mariadb (into a fresh server)")
			case lMyloader:
				s, got = e.peerLoad(base, func(srv *testdb.Server, s *sample) {
					e.shell(fmt.Sprintf("%s -S %s -u root -p %s -d %s -t 2", lt.myloader, srv.Socket, e.password, mydDir), s)
				})
				loadSec.add(s, name, true, "myloader -d dir --threads 2 (into a fresh server)")
			}
			if err := sameCounts(want, got); err != nil {
				b.Fatalf("%s: the loaded server does not hold the source's rows: %v", name, err)
			}
			_ = os.RemoveAll(base)
		}
	}
	_ = os.RemoveAll(filepath.Dir(mydDir))
	p.drop(dumpFile)
}

// dropIgnoredAccounts removes the accounts with a host name that
// mariadb-install-db leaves in the data set (the anonymous account and
// root at the machine's name): the source runs with skip-name-resolve, so the
// server ignores them, and a logical dump of the users that asks the
// server for them (SHOW CREATE USER) fails with error 1133.
func (e *env) dropIgnoredAccounts() {
	db, err := e.src.DB("")
	must(e.b, err)
	defer db.Close()
	// Not roles (Host ''), localhost, IP addresses or patterns.
	const where = "Host NOT IN ('', 'localhost', '%') AND Host NOT REGEXP '^[0-9a-fA-F.:%/_]+$'"
	var names []string
	rows, err := db.QueryContext(e.ctx, "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.global_priv WHERE "+where)
	must(e.b, err)
	for rows.Next() {
		var n string
		must(e.b, rows.Scan(&n))
		names = append(names, n)
	}
	must(e.b, rows.Err())
	rows.Close()
	if len(names) == 0 {
		return
	}
	e.b.Logf("logical: dropping the accounts the source ignores under skip-name-resolve: %s", strings.Join(names, ", "))
	for _, q := range []string{"DELETE FROM mysql.global_priv WHERE " + where, "FLUSH PRIVILEGES"} {
		_, err := db.ExecContext(e.ctx, q)
		must(e.b, err)
	}
}

// strataLogicalRestore restores a logical backup of db1 into datadir with
// a started server, measures it, counts the restored rows and stops the
// server.
func (e *env) strataLogicalRestore(id, datadir string) (sample, map[string]int64) {
	port, err := testdb.FreePort()
	must(e.b, err)
	m := e.meter()
	out, err := e.cli("restore", "db1", "--backup", id, "--target-dir", datadir, "--start", "--port", strconv.Itoa(port), "--wait", "--json")
	var s sample
	m.stop(&s)
	must(e.b, err)
	var rr workflows.RestoreResult
	if err := json.Unmarshal(out, &rr); err != nil {
		e.b.Fatalf("restore result: %v\n%s", err, out)
	}
	if rr.Server == nil {
		e.b.Fatalf("the logical restore started no server: %s", out)
	}
	s.RawBytes = rr.Stats.RawBytes
	s.set("fetch_seconds", rr.Stats.FetchSeconds)
	s.set("start_seconds", rr.Server.StartSeconds)
	s.set("rows", float64(rr.Stats.Rows))
	// The restored server is not the agent's waited child: its CPU (the
	// load itself ran on the load server, which is) is not in ToolCPU.
	srv := &testdb.Server{Port: rr.Server.Port, User: "root", Password: e.password}
	got := e.tableCounts(srv)
	sctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	_ = server.Stop(sctx, &server.Started{PID: rr.Server.PID})
	cancel()
	return s, got
}

// peerLoad makes a fresh server under base (mariadb-install-db, started,
// root's password set: init_seconds), runs load against it (load_seconds),
// counts its rows and stops it. seconds is init + load; cpu_seconds adds
// the target server's CPU to the pipeline's.
func (e *env) peerLoad(base string, load func(*testdb.Server, *sample)) (sample, map[string]int64) {
	t0 := time.Now()
	srv, err := testdb.Init(e.ctx, testdb.Options{BaseDir: base, Password: e.password, ExtraArgs: []string{"--skip-log-bin"}})
	if err != nil {
		e.b.Fatalf("fresh server for a peer load: %v", err)
	}
	defer func() { _ = srv.Stop() }()
	initS := time.Since(t0).Seconds()
	srv0 := procUsage(srv.PID())
	var s sample
	load(srv, &s)
	s.set("load_seconds", s.Seconds)
	s.set("init_seconds", initS)
	s.Seconds += initS
	// What Strata's fetch_seconds covers too: a new datadir, loaded.
	s.set("fetch_seconds", s.Seconds)
	s.ServerCPU = 0 // the source's: not involved
	s.CPU += (procUsage(srv.PID()).self - srv0.self).Seconds()
	return s, e.tableCounts(srv)
}

// tableCounts counts the rows of every table of schema sbtest on srv.
func (e *env) tableCounts(srv *testdb.Server) map[string]int64 {
	db, err := srv.DB("")
	must(e.b, err)
	defer db.Close()
	rows, err := db.QueryContext(e.ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'sbtest' ORDER BY table_name")
	must(e.b, err)
	var names []string
	for rows.Next() {
		var n string
		must(e.b, rows.Scan(&n))
		names = append(names, n)
	}
	must(e.b, rows.Err())
	rows.Close()
	c := map[string]int64{}
	for _, n := range names {
		var k int64
		must(e.b, db.QueryRowContext(e.ctx, "SELECT COUNT(*) FROM sbtest.`"+n+"`").Scan(&k))
		c[n] = k
	}
	return c
}

func sameCounts(want, got map[string]int64) error {
	if len(want) == 0 {
		return fmt.Errorf("the source has no tables in sbtest")
	}
	var bad []string
	for t, n := range want {
		if got[t] != n {
			bad = append(bad, fmt.Sprintf("%s: %d rows, want %d", t, got[t], n))
		}
	}
	for t := range got {
		if _, ok := want[t]; !ok {
			bad = append(bad, "unexpected table "+t)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// dirSize is the bytes of the files under dir.
func dirSize(b *testing.B, dir string) int64 {
	var n int64
	must(b, filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	}))
	return n
}
