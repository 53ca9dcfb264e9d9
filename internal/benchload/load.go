// Package benchload generates a steady sysbench-like write load
// (oltp_write_only: update by key, update of an indexed column, delete and
// re-insert, in one transaction) for benchmarks.
package benchload

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"time"
)

// Commit is one committed transaction: its GTID and when the commit returned.
type Commit struct {
	GTID string
	At   time.Time
}

// Prepare creates schema.sbtest with rows rows.
func Prepare(ctx context.Context, db *sql.DB, schema string, rows int) error {
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + schema,
		"CREATE TABLE " + schema + ".sbtest (id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY k (k)) ENGINE=InnoDB",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	const batch = 1000
	for i := 0; i < rows; i += batch {
		var b strings.Builder
		b.WriteString("INSERT INTO " + schema + ".sbtest (k, c, pad) VALUES ")
		for j := 0; j < batch && i+j < rows; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "(%d, '%s', '%s')", rand.Intn(rows), strings.Repeat("c", 119), strings.Repeat("p", 59))
		}
		if _, err := db.ExecContext(ctx, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// Run runs threads writers on schema.sbtest (made by Prepare) for d and
// returns every commit, in commit order per thread. Each writer waits pause
// between transactions (0 = full speed).
func Run(ctx context.Context, db *sql.DB, schema string, rows, threads int, d, pause time.Duration) ([]Commit, error) {
	return RunTables(ctx, db, schema, []string{"sbtest"}, rows, threads, d, pause)
}

// SysbenchTables names sysbench's tables sbtest1..sbtestN.
func SysbenchTables(n int) []string {
	t := make([]string, n)
	for i := range t {
		t[i] = fmt.Sprintf("sbtest%d", i+1)
	}
	return t
}

// RunTables is Run on several tables of rows rows each (ids 1..rows), such
// as sysbench's sbtest1..N: each transaction writes one row of a table
// picked at random, as sysbench's oltp_write_only does.
func RunTables(ctx context.Context, db *sql.DB, schema string, tables []string, rows, threads int, d, pause time.Duration) ([]Commit, error) {
	if len(tables) == 0 {
		return nil, fmt.Errorf("benchload: no tables")
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		commits  []Commit
		firstErr error
		wg       sync.WaitGroup
	)
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			conn, err := db.Conn(context.Background())
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			defer conn.Close()
			for ctx.Err() == nil {
				id := 1 + r.Intn(rows)
				err := txn(conn, schema+"."+tables[r.Intn(len(tables))], id, r.Intn(rows))
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				var g string
				if err := conn.QueryRowContext(context.Background(), "SELECT @@last_gtid").Scan(&g); err == nil {
					mu.Lock()
					commits = append(commits, Commit{GTID: g, At: time.Now()})
					mu.Unlock()
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}(int64(t))
	}
	wg.Wait()
	return commits, firstErr
}

// txn writes row id of table (schema.name) in one transaction.
func txn(conn *sql.Conn, table string, id, k int) error {
	ctx := context.Background()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	stmts := []struct {
		q    string
		args []any
	}{
		{"UPDATE " + table + " SET k = k + 1 WHERE id = ?", []any{id}},
		{"UPDATE " + table + " SET c = ? WHERE id = ?", []any{fmt.Sprintf("%0119d", k), id}},
		{"DELETE FROM " + table + " WHERE id = ?", []any{id}},
		{"INSERT INTO " + table + " (id, k, c, pad) VALUES (?, ?, ?, ?)", []any{id, k, strings.Repeat("c", 119), strings.Repeat("p", 59)}},
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.q, s.args...); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}
