package drill

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/strata-backup/strata/internal/manifest"
)

// Querier runs queries: *sql.DB, *sql.Conn and *sql.Tx satisfy it.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SystemSchemas are the server's own schemas, never summed or checked.
var SystemSchemas = []string{"mysql", "sys", "information_schema", "performance_schema"}

// BaseTable is one base table of a user schema.
type BaseTable struct {
	Schema, Table, Engine string
	// DataBytes is information_schema's DATA_LENGTH + INDEX_LENGTH (an
	// estimate for InnoDB).
	DataBytes int64
}

// Name is schema.table, as problems and logs name a table.
func (t BaseTable) Name() string { return t.Schema + "." + t.Table }

// ListBaseTables lists the base tables of the user schemas (every schema
// but SystemSchemas), ordered by schema and table.
func ListBaseTables(ctx context.Context, q Querier) ([]BaseTable, error) {
	rows, err := q.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(ENGINE, ''),
		COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0)
		FROM information_schema.TABLES
		WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN (?, ?, ?, ?)
		ORDER BY TABLE_SCHEMA, TABLE_NAME`,
		SystemSchemas[0], SystemSchemas[1], SystemSchemas[2], SystemSchemas[3])
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []BaseTable
	for rows.Next() {
		var t BaseTable
		if err := rows.Scan(&t.Schema, &t.Table, &t.Engine, &t.DataBytes); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return out, nil
}

// QuoteIdent quotes a MySQL identifier: `a“b` for a`b.
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// SumSQL builds the query that sums one table: its row count and an
// order-independent checksum of its rows. Each row hashes to the MD5 of
// the MD5s of its columns' bytes (CAST AS BINARY: the bytes as stored for
// strings and blobs, the server's text form for numbers and dates; NULL
// hashes to the marker 'N', which no MD5 in hex equals); the checksum is the
// exact (DECIMAL) sum of the first 64 bits of the row hashes, so that it
// does not depend on row order and a duplicated row does not cancel out.
// Hashing each column first keeps every intermediate value 32 bytes per
// column, whatever the size of a blob (a longer string than
// max_allowed_packet would turn into NULL).
func SumSQL(schema, table string, columns []string) string {
	parts := make([]string, len(columns))
	for i, c := range columns {
		parts[i] = "IFNULL(MD5(CAST(" + QuoteIdent(c) + " AS BINARY)), 'N')"
	}
	row := "''"
	if len(parts) > 0 {
		row = "CONCAT_WS(',', " + strings.Join(parts, ", ") + ")"
	}
	return "SELECT COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(MD5(" + row + "), 16), 16, 10) AS UNSIGNED)), 0) FROM " +
		QuoteIdent(schema) + "." + QuoteIdent(table)
}

// Columns lists a table's columns in their order.
func Columns(ctx context.Context, q Querier, schema, table string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, schema, table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s.%s: %w", schema, table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("columns of %s.%s: %w", schema, table, err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("columns of %s.%s: %w", schema, table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("columns of %s.%s: the table has no columns (was it dropped?)", schema, table)
	}
	return cols, nil
}

// SumTable computes the row count and checksum of one table with SumSQL.
func SumTable(ctx context.Context, q Querier, schema, table string) (manifest.TableSum, error) {
	cols, err := Columns(ctx, q, schema, table)
	if err != nil {
		return manifest.TableSum{}, err
	}
	s := manifest.TableSum{Schema: schema, Table: table}
	if err := q.QueryRowContext(ctx, SumSQL(schema, table, cols)).Scan(&s.Rows, &s.Checksum); err != nil {
		return manifest.TableSum{}, fmt.Errorf("checksum of %s.%s: %w", schema, table, err)
	}
	return s, nil
}

// ChecksumTable computes the row count and the server's CHECKSUM TABLE
// of one table (manifest.SumsChecksumTable). Both are consistent reads:
// inside a consistent snapshot they see the snapshot.
func ChecksumTable(ctx context.Context, q Querier, schema, table string) (manifest.TableSum, error) {
	name := QuoteIdent(schema) + "." + QuoteIdent(table)
	s := manifest.TableSum{Schema: schema, Table: table}
	if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+name).Scan(&s.Rows); err != nil {
		return manifest.TableSum{}, fmt.Errorf("row count of %s.%s: %w", schema, table, err)
	}
	var got string
	var sum sql.NullString
	if err := q.QueryRowContext(ctx, "CHECKSUM TABLE "+name).Scan(&got, &sum); err != nil {
		return manifest.TableSum{}, fmt.Errorf("checksum of %s.%s: %w", schema, table, err)
	}
	if !sum.Valid {
		return manifest.TableSum{}, fmt.Errorf("checksum of %s.%s: the server returned none (was the table dropped?)", schema, table)
	}
	s.Checksum = sum.String
	return s, nil
}

// ChecksumsComparable reports whether checksums recorded with algorithm
// on a server of version recorded can be compared with those computed on
// a server of version server: CHECKSUM TABLE's value is the server's own
// (its row format and version), so checksum_table sums from another
// version compare row counts only, and note says why.
func ChecksumsComparable(algorithm, recorded, server string) (ok bool, note string) {
	if algorithm != manifest.SumsChecksumTable || recorded == "" || recorded == server {
		return true, ""
	}
	return false, fmt.Sprintf("checksums not compared, row counts only: CHECKSUM TABLE values of %s (the backup's server) and %s (the drill's) are not comparable", recorded, server)
}

// RowsOnly returns the sums without their checksums, for CompareSums of
// row counts alone.
func RowsOnly(sums []manifest.TableSum) []manifest.TableSum {
	out := make([]manifest.TableSum, len(sums))
	for i, s := range sums {
		s.Checksum = ""
		out[i] = s
	}
	return out
}

// DefaultSumsAlgorithm is the algorithm backups record sums with.
const DefaultSumsAlgorithm = manifest.SumsChecksumTable

// TableSums sums, with algorithm (manifest.SumsRowMD5 or
// SumsChecksumTable), every base table of the user schemas that skip (when
// not nil) does not exclude, in schema and table order. The backup records
// it inside a consistent snapshot; a drill runs it with the recorded
// algorithm on the restored server and compares with CompareSums.
func TableSums(ctx context.Context, q Querier, algorithm string, skip func(schema, table string) bool) ([]manifest.TableSum, error) {
	tables, err := ListBaseTables(ctx, q)
	if err != nil {
		return nil, err
	}
	return sumTables(ctx, q, tables, algorithm, skip)
}

// sumTables sums the tables that skip does not exclude.
func sumTables(ctx context.Context, q Querier, tables []BaseTable, algorithm string, skip func(schema, table string) bool) ([]manifest.TableSum, error) {
	sum := SumTable
	switch algorithm {
	case manifest.SumsRowMD5:
	case manifest.SumsChecksumTable:
		sum = ChecksumTable
	default:
		return nil, fmt.Errorf("table sums algorithm %q is unknown to this version of Strata: upgrade it", algorithm)
	}
	out := []manifest.TableSum{}
	for _, t := range tables {
		if skip != nil && skip(t.Schema, t.Table) {
			continue
		}
		s, err := sum(ctx, q, t.Schema, t.Table)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// SkipTables returns a skip function for TableSums that excludes the
// tables the backup's sums skipped (manifest.TableSums.Skipped), so that a
// drill sums the same tables the backup did.
func SkipTables(skipped []manifest.SkippedTable) func(schema, table string) bool {
	type id struct{ schema, table string }
	set := make(map[id]bool, len(skipped))
	for _, s := range skipped {
		set[id{s.Schema, s.Table}] = true
	}
	return func(schema, table string) bool { return set[id{schema, table}] }
}

// CompareSums compares the sums recorded at backup time (want) with those
// of the restored server (got). Each difference is a problem naming the
// table and both values: a table missing from got, an extra table in got,
// a different row count, a different checksum. compared counts the tables
// found in both.
func CompareSums(want, got []manifest.TableSum) (compared int, problems []string) {
	type id struct{ schema, table string }
	key := func(s manifest.TableSum) id { return id{s.Schema, s.Table} }
	g := make(map[id]manifest.TableSum, len(got))
	for _, s := range got {
		g[key(s)] = s
	}
	seen := make(map[id]bool, len(want))
	for _, w := range want {
		seen[key(w)] = true
		k := w.Schema + "." + w.Table
		s, ok := g[key(w)]
		if !ok {
			problems = append(problems, fmt.Sprintf("table %s is missing: the backup recorded %d rows, checksum %s", k, w.Rows, w.Checksum))
			continue
		}
		compared++
		switch {
		case s.Rows != w.Rows:
			problems = append(problems, fmt.Sprintf("table %s has %d rows, the backup recorded %d (checksum %s, recorded %s)", k, s.Rows, w.Rows, s.Checksum, w.Checksum))
		case s.Checksum != w.Checksum:
			problems = append(problems, fmt.Sprintf("table %s has checksum %s, the backup recorded %s (%d rows)", k, s.Checksum, w.Checksum, s.Rows))
		}
	}
	var extra []string
	for _, s := range got {
		if !seen[key(s)] {
			extra = append(extra, fmt.Sprintf("table %s.%s is not in the backup's sums: %d rows, checksum %s", s.Schema, s.Table, s.Rows, s.Checksum))
		}
	}
	sort.Strings(extra)
	return compared, append(problems, extra...)
}
