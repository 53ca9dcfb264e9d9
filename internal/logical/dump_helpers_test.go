package logical_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
	"github.com/strata-backup/strata/internal/testdb"
)

// forFlavors runs test once on MariaDB and once on MySQL.
func forFlavors(t *testing.T, test func(t *testing.T, fl flavor.Name)) {
	for _, fl := range []flavor.Name{flavor.MariaDB, flavor.MySQL} {
		t.Run(string(fl), func(t *testing.T) { test(t, fl) })
	}
}

func startServer(t *testing.T, fl flavor.Name) (*testdb.Server, *sql.DB) {
	t.Helper()
	return startServerOpts(t, testdb.Options{Flavor: fl})
}

func startServerOpts(t *testing.T, opts testdb.Options) (*testdb.Server, *sql.DB) {
	t.Helper()
	s := testdb.ForTest(t, opts)
	db, err := s.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return s, db
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func execAll(t *testing.T, db execer, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	for _, q := range stmts {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, "%s", q)
	}
}

// client returns the command line client of the server's flavor,
// connected to it as root (database db when not "").
func client(t *testing.T, s *testdb.Server, db string, extra ...string) *exec.Cmd {
	t.Helper()
	var bin string
	var err error
	if s.Flavor == flavor.MySQL {
		bin, err = testdb.MySQLBinary("mysql")
	} else {
		bin, err = testdb.Binary("mariadb")
	}
	require.NoError(t, err)
	args := []string{"--no-defaults", "-h", "127.0.0.1", "-P", fmt.Sprint(s.Port), "-u", "root",
		"--password=" + s.Password, "--default-character-set=utf8mb4"}
	args = append(args, extra...)
	if db != "" {
		args = append(args, db)
	}
	return exec.Command(bin, args...)
}

// loadByHand feeds every file of the dump, in Index order, to the
// command line client: the format is loadable without Strata's loader.
// From the users file the statements about root are left out (root
// exists on every server; its CREATE USER would fail).
func loadByHand(t *testing.T, s *testdb.Server, dir string, idx logical.Index) {
	t.Helper()
	for _, f := range idx.Files {
		db := ""
		if f.Kind != logical.KindUsers && f.Kind != logical.KindDatabase && f.Kind != logical.KindGrants {
			db = f.Schema
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Name)))
		require.NoError(t, err)
		if f.Kind == logical.KindUsers {
			var keep []string
			for _, st := range strings.SplitAfter(string(b), "\n;;\n") {
				if !strings.Contains(st, "`root`@") && !strings.Contains(st, "'root'@") {
					keep = append(keep, st)
				}
			}
			b = []byte(strings.Join(keep, ""))
		}
		cmd := client(t, s, db)
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "load %s: %s", f.Name, out)
	}
}

// rowsOf returns the string columns of a query's rows, NULL as "NULL".
func rowsOf(t *testing.T, db *sql.DB, q string) [][]string {
	t.Helper()
	rows, err := db.Query(q)
	require.NoError(t, err, q)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = "NULL"
			if v.Valid {
				row[i] = v.String
			}
		}
		out = append(out, row)
	}
	require.NoError(t, rows.Err())
	return out
}

var autoInc = regexp.MustCompile(` AUTO_INCREMENT=[0-9]+`)

// recordingSink is a DirSink that also records, for each table, the most
// data file Puts that were in flight at once, and when each file came.
type recordingSink struct {
	logical.DirSink
	delay time.Duration

	mu       sync.Mutex
	inFlight map[string]int
	maxIn    map[string]int
	at       map[string]time.Time
	hook     func(f *logical.File)
}

func newRecordingSink(dir string, delay time.Duration) *recordingSink {
	return &recordingSink{DirSink: logical.DirSink{Dir: dir}, delay: delay,
		inFlight: map[string]int{}, maxIn: map[string]int{}, at: map[string]time.Time{}}
}

func (s *recordingSink) Put(ctx context.Context, f *logical.File, data []byte) error {
	key := f.Schema + "." + f.Object
	s.mu.Lock()
	s.at[f.Name] = time.Now()
	if f.Kind == logical.KindData {
		s.inFlight[key]++
		if s.inFlight[key] > s.maxIn[key] {
			s.maxIn[key] = s.inFlight[key]
		}
	}
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(f)
	}
	if f.Kind == logical.KindData && s.delay > 0 {
		time.Sleep(s.delay)
	}
	err := s.DirSink.Put(ctx, f, data)
	s.mu.Lock()
	if f.Kind == logical.KindData {
		s.inFlight[key]--
	}
	s.mu.Unlock()
	return err
}

// dataLines returns the INSERT lines of a table's data files.
func dataLines(t *testing.T, dir string, idx logical.Index, schema, table string) []string {
	t.Helper()
	var out []string
	for _, f := range idx.Files {
		if f.Kind != logical.KindData || f.Schema != schema || f.Object != table {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Name)))
		require.NoError(t, err)
		for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if bytes.HasPrefix(l, []byte("INSERT INTO ")) {
				out = append(out, string(l))
			}
		}
	}
	return out
}

func testdbOptions(fl flavor.Name, password string) testdb.Options {
	return testdb.Options{Flavor: fl, Password: password}
}
