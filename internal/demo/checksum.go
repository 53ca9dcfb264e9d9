package demo

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
)

// Checksums returns, for every base table in schema, a content checksum of
// the form "rows=N checksum=X", where N is SELECT COUNT(*) and X is the
// result of CHECKSUM TABLE ... EXTENDED (which reads every row, so it does
// not depend on the physical layout of the data files). The map is keyed by
// table name. Views are ignored.
func Checksums(ctx context.Context, db *sql.DB, schema string) (map[string]string, error) {
	rows, err := db.QueryContext(ctx,
		"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
		schema)
	if err != nil {
		return nil, fmt.Errorf("demo: listing tables of %s: %w", schema, err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	out := make(map[string]string, len(tables))
	for _, t := range tables {
		name := quoteIdent(schema) + "." + quoteIdent(t)
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+name).Scan(&n); err != nil {
			return nil, fmt.Errorf("demo: counting %s: %w", name, err)
		}
		var tbl string
		var sum sql.NullString
		if err := db.QueryRowContext(ctx, "CHECKSUM TABLE "+name+" EXTENDED").Scan(&tbl, &sum); err != nil {
			return nil, fmt.Errorf("demo: CHECKSUM TABLE %s: %w", name, err)
		}
		if !sum.Valid {
			return nil, fmt.Errorf("demo: CHECKSUM TABLE %s returned NULL", name)
		}
		out[t] = fmt.Sprintf("rows=%d checksum=%s", n, sum.String)
	}
	return out, nil
}

// CompareChecksums compares two results of Checksums (a is typically the
// source, b the restored copy) and returns one human-readable line per
// difference, sorted by table name. An empty result means they are equal.
func CompareChecksums(a, b map[string]string) []string {
	names := make(map[string]struct{}, len(a)+len(b))
	for t := range a {
		names[t] = struct{}{}
	}
	for t := range b {
		names[t] = struct{}{}
	}
	sorted := make([]string, 0, len(names))
	for t := range names {
		sorted = append(sorted, t)
	}
	sort.Strings(sorted)

	var diffs []string
	for _, t := range sorted {
		va, inA := a[t]
		vb, inB := b[t]
		switch {
		case !inB:
			diffs = append(diffs, fmt.Sprintf("table %s: missing in second (first has %s)", t, va))
		case !inA:
			diffs = append(diffs, fmt.Sprintf("table %s: missing in first (second has %s)", t, vb))
		case va != vb:
			diffs = append(diffs, fmt.Sprintf("table %s: first has %s, second has %s", t, va, vb))
		}
	}
	return diffs
}
