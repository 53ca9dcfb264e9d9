package tablecopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/strata-backup/strata/internal/flavor"
)

// Errors the copy returns (wrapped, with a message naming the table).
var (
	// ErrTableNotFound: the source table is not on the scratch server, i.e.
	// not in the backup at the restore's point.
	ErrTableNotFound = errors.New("table not found")
	// ErrTableExists: the destination name is taken on the live server
	// (and Replace was not asked for).
	ErrTableExists = errors.New("table exists")
	// ErrSchemaNotFound: the destination's schema is not on the live
	// server.
	ErrSchemaNotFound = errors.New("schema not found")
	// ErrNotTransportable: the table's tablespace cannot move to the live
	// server and the logical copy is not available.
	ErrNotTransportable = errors.New("table not transportable")
	// ErrMismatch: the table on the live server does not have the
	// source's rows or checksum after the import.
	ErrMismatch = errors.New("restored table differs from its source")
	// ErrDatadir: the live server's datadir is not the configured one, or
	// the table's files are not where they should be.
	ErrDatadir = errors.New("datadir mismatch")
)

// Querier runs queries: *sql.DB, *sql.Conn and *sql.Tx satisfy it.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Table is what the scratch server says of the source table.
type Table struct {
	Name TableName `json:"name"`
	// Engine, RowFormat and CreateOptions are information_schema.TABLES'.
	Engine        string `json:"engine"`
	RowFormat     string `json:"row_format"`
	CreateOptions string `json:"create_options,omitempty"`
	// Partitions is the number of partitions (0: not partitioned).
	Partitions int `json:"partitions,omitempty"`
	// Create is SHOW CREATE TABLE's statement.
	Create string `json:"create"`
	// Triggers are the names of the table's triggers.
	Triggers []string `json:"triggers,omitempty"`
}

// Server is what decides whether a tablespace can move between two
// servers.
type Server struct {
	Flavor   flavor.Flavor `json:"flavor"`
	PageSize int64         `json:"page_size"`
	Datadir  string        `json:"datadir"`
}

// InspectServer reads a server's flavor, version, InnoDB page size and
// datadir.
func InspectServer(ctx context.Context, q Querier) (Server, error) {
	var version, comment, datadir string
	var page int64
	if err := q.QueryRowContext(ctx, "SELECT VERSION(), @@version_comment, @@innodb_page_size, @@datadir").Scan(&version, &comment, &page, &datadir); err != nil {
		return Server{}, fmt.Errorf("inspect server: %w", err)
	}
	return Server{Flavor: flavor.Detect(version, comment), PageSize: page, Datadir: datadir}, nil
}

// Inspect reads the source table's definition on the scratch server;
// ErrTableNotFound (wrapped) when there is no base table of that name.
func Inspect(ctx context.Context, q Querier, n TableName) (*Table, error) {
	t := &Table{Name: n}
	var typ string
	var engine, rowFormat, opts sql.NullString
	err := q.QueryRowContext(ctx, `SELECT TABLE_TYPE, ENGINE, ROW_FORMAT, CREATE_OPTIONS FROM information_schema.TABLES
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, n.Schema, n.Table).Scan(&typ, &engine, &rowFormat, &opts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrTableNotFound, n)
	}
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", n, err)
	}
	if typ != "BASE TABLE" && typ != "SYSTEM VERSIONED" {
		return nil, fmt.Errorf("%w: %s is a %s, not a base table", ErrTableNotFound, n, strings.ToLower(typ))
	}
	t.Engine, t.RowFormat, t.CreateOptions = engine.String, rowFormat.String, opts.String
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.PARTITIONS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND PARTITION_NAME IS NOT NULL`, n.Schema, n.Table).Scan(&t.Partitions); err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", n, err)
	}
	var name string
	if err := q.QueryRowContext(ctx, "SHOW CREATE TABLE "+n.Quoted()).Scan(&name, &t.Create); err != nil {
		return nil, fmt.Errorf("show create table %s: %w", n, err)
	}
	rows, err := q.QueryContext(ctx, `SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
		WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? ORDER BY TRIGGER_NAME`, n.Schema, n.Table)
	if err != nil {
		return nil, fmt.Errorf("triggers of %s: %w", n, err)
	}
	defer rows.Close()
	for rows.Next() {
		var tr string
		if err := rows.Scan(&tr); err != nil {
			return nil, err
		}
		t.Triggers = append(t.Triggers, tr)
	}
	return t, rows.Err()
}

// Transportable says why the table's tablespace cannot move from the
// scratch server to the live one ("" when it can): its engine, its
// partitioning, or the servers' flavor, version or page size.
func Transportable(t *Table, scratch, live Server) string {
	switch {
	case !strings.EqualFold(t.Engine, "InnoDB"):
		return fmt.Sprintf("engine %s (only InnoDB tablespaces move)", t.Engine)
	case t.Partitions > 0:
		return fmt.Sprintf("partitioned (%d partitions)", t.Partitions)
	case scratch.Flavor.Name != live.Flavor.Name:
		return fmt.Sprintf("the scratch server is %s and the live server %s", scratch.Flavor, live.Flavor)
	case !sameMajorMinor(scratch.Flavor, live.Flavor):
		return fmt.Sprintf("the scratch server is version %s and the live server %s", scratch.Flavor.Version, live.Flavor.Version)
	case scratch.PageSize != live.PageSize:
		return fmt.Sprintf("innodb_page_size %d on the scratch server, %d on the live server", scratch.PageSize, live.PageSize)
	case strings.Contains(strings.ToUpper(t.CreateOptions), "ENCRYPTED=YES"):
		return "encrypted tablespace"
	case live.Flavor.Name == flavor.MariaDB && fulltext.MatchString(t.Create):
		// MariaDB 10.11: the imported table's FULLTEXT index does not
		// answer ("does not have FULLTEXT index"), and dropping and adding
		// it again crashed the server in the tests.
		return "a FULLTEXT index (MariaDB cannot rebuild the FULLTEXT index of an imported tablespace)"
	}
	return ""
}

func sameMajorMinor(a, b flavor.Flavor) bool {
	am, an := a.MajorMinor()
	bm, bn := b.MajorMinor()
	return am == bm && an == bn && am != 0
}

// fulltext matches a FULLTEXT index of SHOW CREATE TABLE: the clause and
// the quoted name.
var fulltext = regexp.MustCompile("(?m)^\\s*(FULLTEXT (?:KEY|INDEX) (`(?:[^`]|``)+`) .*?),?$")

var (
	createHead = regexp.MustCompile("^CREATE TABLE `(?:[^`]|``)+` \\(")
	// A foreign key's constraint name is unique per schema: the restored
	// table gets generated ones (the original may still hold the names).
	constraintName = regexp.MustCompile("CONSTRAINT `(?:[^`]|``)+` FOREIGN KEY")
	rowFormatOpt   = regexp.MustCompile(`(?i)\bROW_FORMAT=`)
)

// Definition is the source's CREATE TABLE statement for the table dst:
// the name replaced, foreign keys' constraint names dropped (the server
// generates new ones), and the row format made explicit (a server with
// another innodb_default_row_format would otherwise create a table the
// tablespace does not fit). fks reports whether foreign keys were found.
func Definition(t *Table, dst TableName) (stmt string, fks bool, err error) {
	loc := createHead.FindStringIndex(t.Create)
	if loc == nil {
		return "", false, fmt.Errorf("SHOW CREATE TABLE %s does not start with CREATE TABLE `name` (: %.60q", t.Name, t.Create)
	}
	body := t.Create[loc[1]-1:]
	fks = constraintName.MatchString(body)
	body = constraintName.ReplaceAllString(body, "FOREIGN KEY")
	stmt = "CREATE TABLE " + dst.Quoted() + " " + body
	if t.RowFormat != "" && !rowFormatOpt.MatchString(t.Create) {
		stmt += " ROW_FORMAT=" + strings.ToUpper(t.RowFormat)
	}
	return stmt, fks, nil
}

// Exists reports whether a table or view of that name is on the server.
func Exists(ctx context.Context, q Querier, n TableName) (bool, error) {
	var c int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`,
		n.Schema, n.Table).Scan(&c); err != nil {
		return false, fmt.Errorf("look up %s: %w", n, err)
	}
	return c > 0, nil
}

// SchemaExists reports whether the schema is on the server.
func SchemaExists(ctx context.Context, q Querier, schema string) (bool, error) {
	var c int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?`, schema).Scan(&c); err != nil {
		return false, fmt.Errorf("look up schema %s: %w", schema, err)
	}
	return c > 0, nil
}

// CheckDestination checks, on the live server, that dst can be created:
// its schema exists, and the name is free unless replace.
func CheckDestination(ctx context.Context, q Querier, dst TableName, replace bool) (exists bool, err error) {
	ok, err := SchemaExists(ctx, q, dst.Schema)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%w: schema %s is not on the live server: create it (CREATE DATABASE %s) or restore under another name with --as",
			ErrSchemaNotFound, QuoteIdent(dst.Schema), QuoteIdent(dst.Schema))
	}
	exists, err = Exists(ctx, q, dst)
	if err != nil {
		return false, err
	}
	if exists && !replace {
		return true, fmt.Errorf("%w: %s is on the live server; use --as to restore under another name, or --replace to replace it", ErrTableExists, dst)
	}
	return exists, nil
}

// Sum is a table's row count and CHECKSUM TABLE.
type Sum struct {
	Rows     int64  `json:"rows"`
	Checksum string `json:"checksum"`
	// Content is the sum of the MD5s of the rows' column values
	// (drill.SumSQL), taken when the CHECKSUM TABLE values differ.
	Content string `json:"content,omitempty"`
}

// Checksum counts the rows and takes CHECKSUM TABLE of n.
func Checksum(ctx context.Context, q Querier, n TableName) (Sum, error) {
	var s Sum
	if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+n.Quoted()).Scan(&s.Rows); err != nil {
		return Sum{}, fmt.Errorf("row count of %s: %w", n, err)
	}
	var got string
	var sum sql.NullString
	if err := q.QueryRowContext(ctx, "CHECKSUM TABLE "+n.Quoted()).Scan(&got, &sum); err != nil {
		return Sum{}, fmt.Errorf("checksum of %s: %w", n, err)
	}
	if !sum.Valid {
		return Sum{}, fmt.Errorf("checksum of %s: the server returned none", n)
	}
	s.Checksum = sum.String
	return s, nil
}
