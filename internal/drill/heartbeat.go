package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// ErrNoHeartbeat is returned (wrapped) by ReadHeartbeat when the heartbeat
// table or its row is absent.
var ErrNoHeartbeat = errors.New("no heartbeat")

// ParseTable splits "schema.table" into its parts. Both must be non-empty;
// neither may hold a '.' or a backtick.
func ParseTable(s string) (schema, table string, err error) {
	schema, table, ok := strings.Cut(s, ".")
	if !ok || schema == "" || table == "" || strings.Contains(table, ".") || strings.ContainsAny(s, "`\x00") {
		return "", "", fmt.Errorf("%q is not schema.table (e.g. strata.heartbeat)", s)
	}
	return schema, table, nil
}

// ReadHeartbeat returns the newest heartbeat written into table (UTC): the
// time the restored data was last known current. ErrNoHeartbeat when the
// table or any row is absent.
func ReadHeartbeat(ctx context.Context, db *sql.DB, table string) (time.Time, error) {
	schema, name, err := ParseTable(table)
	if err != nil {
		return time.Time{}, fmt.Errorf("heartbeat table: %w", err)
	}
	var ts sql.NullString
	err = db.QueryRowContext(ctx, "SELECT DATE_FORMAT(MAX(ts), '%Y-%m-%d %H:%i:%s.%f') FROM "+QuoteIdent(schema)+"."+QuoteIdent(name)).Scan(&ts)
	var me *mysql.MySQLError
	switch {
	case errors.As(err, &me) && (me.Number == 1146 || me.Number == 1049): // no such table / database
		return time.Time{}, fmt.Errorf("%w: table %s does not exist", ErrNoHeartbeat, table)
	case err != nil:
		return time.Time{}, fmt.Errorf("read heartbeat from %s: %w", table, err)
	case !ts.Valid:
		return time.Time{}, fmt.Errorf("%w: table %s has no row", ErrNoHeartbeat, table)
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05.000000", ts.String, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("read heartbeat from %s: %q is not a time: %w", table, ts.String, err)
	}
	return t, nil
}
