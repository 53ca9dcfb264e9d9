package drill

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// CheckTables runs CHECK TABLE on every base table of the user schemas.
// checked counts the tables checked; each problem names schema.table and
// the server's message (a status other than OK, or an error row). err is
// for a failure to list or check at all.
func CheckTables(ctx context.Context, db *sql.DB) (checked int, problems []string, err error) {
	tables, err := ListBaseTables(ctx, db)
	if err != nil {
		return 0, nil, err
	}
	for _, t := range tables {
		msgs, err := CheckTable(ctx, db, t.Schema, t.Table)
		if err != nil {
			return checked, problems, fmt.Errorf("check table %s: %w", t.Name(), err)
		}
		checked++
		for _, m := range msgs {
			problems = append(problems, fmt.Sprintf("table %s: %s", t.Name(), m))
		}
	}
	return checked, problems, nil
}

// checkTable returns the messages of CHECK TABLE that say something is
// wrong: a final status other than OK, and every error row.
// CheckTable returns what CHECK TABLE of schema.table finds wrong: a
// final status other than OK, and every error row. q is a *sql.DB or a
// *sql.Conn.
func CheckTable(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, schema, table string) ([]string, error) {
	rows, err := q.QueryContext(ctx, "CHECK TABLE "+QuoteIdent(schema)+"."+QuoteIdent(table))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var tbl, op, typ, text sql.NullString
		if err := rows.Scan(&tbl, &op, &typ, &text); err != nil {
			return nil, err
		}
		switch strings.ToLower(typ.String) {
		case "status":
			if !strings.EqualFold(text.String, "OK") && !strings.EqualFold(text.String, "Table is already up to date") {
				msgs = append(msgs, "status: "+text.String)
			}
		case "error":
			msgs = append(msgs, "error: "+text.String)
		}
	}
	return msgs, rows.Err()
}
