package logical

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/strata-backup/strata/internal/flavor"
)

// systemSchemas are never dumped: the server's own schemas, and
// strata_load, where a load keeps its progress record.
var systemSchemas = []string{"mysql", "information_schema", "performance_schema", "sys", "strata_load"}

// systemAccounts are the accounts a server creates for itself; every other
// account (root included) is dumped.
var systemAccounts = map[string]bool{
	"'mariadb.sys'@'localhost'":      true,
	"'mysql.sys'@'localhost'":        true,
	"'mysql.session'@'localhost'":    true,
	"'mysql.infoschema'@'localhost'": true,
}

// column is one column of a table as the dump reads it.
type column struct {
	Name     string
	DataType string // information_schema DATA_TYPE, lower case
	Charset  string // CHARACTER_SET_NAME; "" for non-character types
	Nullable bool
	AutoInc  bool
	kind     valueKind
}

// tableInfo is what the dump knows of one base table.
type tableInfo struct {
	Schema, Name   string
	Engine         string
	Versioned      bool
	Transactional  bool // in the InnoDB snapshot; false: dumped while the lock is held
	EstRows        int64
	AvgRowLen      int64
	Columns        []column // the dumped columns, in order
	Key            []column // the splitting key; nil: not split
	KeyName        string
	Create         string // SHOW CREATE TABLE, AUTO_INCREMENT included
	Deferred       []string
	hasFK          bool
	periodExplicit bool                // versioned with named ROW START/END columns
	indexes        map[string][]string // index name -> columns (first first)
}

// catalog is the set of objects a dump covers, read while the lock is held.
type catalog struct {
	Schemas   []string
	Tables    []*tableInfo
	Views     []objectRef
	Sequences []objectRef
	Routines  []objectRef // Type PROCEDURE | FUNCTION
	Triggers  []objectRef // Table: the trigger's table
	Events    []objectRef
}

type objectRef struct {
	Schema, Name string
	Type         string
	Table        string
}

func schemaFilterSQL(col string) string {
	q := make([]string, len(systemSchemas))
	for i, s := range systemSchemas {
		q[i] = quoteString(s)
	}
	return col + " NOT IN (" + strings.Join(q, ",") + ")"
}

// readCatalog lists schemas, tables (with their columns, keys and
// definitions), views, sequences, routines, triggers and events.
func readCatalog(ctx context.Context, conn *sql.Conn, fl flavor.Flavor, opt *DumpOptions) (*catalog, error) {
	c := &catalog{}
	rows, err := conn.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE "+
		schemaFilterSQL("SCHEMA_NAME")+" ORDER BY SCHEMA_NAME")
	if err != nil {
		return nil, fmt.Errorf("list schemas: %w", err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, err
		}
		if MatchFilter(opt.Include, opt.Exclude, s, "") {
			c.Schemas = append(c.Schemas, s)
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list schemas: %w", err)
	}
	wanted := map[string]bool{}
	for _, s := range c.Schemas {
		wanted[s] = true
	}

	byName := map[[2]string]*tableInfo{}
	rows, err = conn.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, IFNULL(ENGINE,''), "+
		"IFNULL(TABLE_ROWS,0), IFNULL(AVG_ROW_LENGTH,0) FROM information_schema.TABLES WHERE "+
		schemaFilterSQL("TABLE_SCHEMA")+" ORDER BY TABLE_SCHEMA, TABLE_NAME")
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for rows.Next() {
		var s, n, typ, engine string
		var est, avg int64
		if err := rows.Scan(&s, &n, &typ, &engine, &est, &avg); err != nil {
			rows.Close()
			return nil, err
		}
		if !wanted[s] {
			continue
		}
		switch typ {
		case "VIEW":
			if MatchFilter(opt.Include, opt.Exclude, s, n) {
				c.Views = append(c.Views, objectRef{Schema: s, Name: n})
			}
		case "SEQUENCE":
			if MatchFilter(opt.Include, opt.Exclude, s, n) {
				c.Sequences = append(c.Sequences, objectRef{Schema: s, Name: n})
			}
		case "BASE TABLE", "SYSTEM VERSIONED":
			if !MatchFilter(opt.Include, opt.Exclude, s, n) {
				continue
			}
			t := &tableInfo{Schema: s, Name: n, Engine: engine, Versioned: typ == "SYSTEM VERSIONED",
				Transactional: strings.EqualFold(engine, "InnoDB"), EstRows: est, AvgRowLen: avg,
				indexes: map[string][]string{}}
			c.Tables = append(c.Tables, t)
			byName[[2]string{s, n}] = t
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}

	if err := readColumns(ctx, conn, byName); err != nil {
		return nil, err
	}
	if err := readKeys(ctx, conn, byName); err != nil {
		return nil, err
	}
	if err := readForeignKeys(ctx, conn, byName); err != nil {
		return nil, err
	}
	for _, t := range c.Tables {
		def, err := showCreate(ctx, conn, "SHOW CREATE TABLE "+QuoteName(t.Schema, t.Name), 1)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", QuoteName(t.Schema, t.Name), err)
		}
		t.Create = def
		t.Deferred = deferredIndexes(t)
	}

	if err := readObjects(ctx, conn, c, wanted, opt); err != nil {
		return nil, err
	}
	return c, nil
}

func readColumns(ctx context.Context, conn *sql.Conn, byName map[[2]string]*tableInfo) error {
	rows, err := conn.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, "+
		"IFNULL(CHARACTER_SET_NAME,''), IS_NULLABLE, EXTRA, IFNULL(GENERATION_EXPRESSION,'') "+
		"FROM information_schema.COLUMNS WHERE "+schemaFilterSQL("TABLE_SCHEMA")+
		" ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION")
	if err != nil {
		return fmt.Errorf("list columns: %w", err)
	}
	for rows.Next() {
		var s, tn, name, dt, cs, nullable, extra, genExpr string
		if err := rows.Scan(&s, &tn, &name, &dt, &cs, &nullable, &extra, &genExpr); err != nil {
			rows.Close()
			return err
		}
		t := byName[[2]string{s, tn}]
		if t == nil {
			continue
		}
		// Generated columns are computed again by the server; MariaDB's
		// explicit system-versioning columns are "generated" too but hold
		// data that a versioned dump keeps. (MySQL's DEFAULT_GENERATED is
		// a column with an expression default, not a generated one.)
		ex := strings.ToUpper(extra)
		generated := strings.Contains(ex, "VIRTUAL GENERATED") || strings.Contains(ex, "STORED GENERATED") ||
			strings.Contains(ex, "PERSISTENT GENERATED")
		if generated && genExpr != "ROW START" && genExpr != "ROW END" {
			continue
		}
		if genExpr == "ROW START" || genExpr == "ROW END" {
			t.periodExplicit = true
		}
		dt = strings.ToLower(dt)
		col := column{Name: name, DataType: dt, Charset: cs, Nullable: nullable == "YES",
			AutoInc: strings.Contains(strings.ToLower(extra), "auto_increment")}
		col.kind = kindOf(dt, cs)
		t.Columns = append(t.Columns, col)
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("list columns: %w", err)
	}
	for _, t := range byName {
		if t.Versioned && !t.periodExplicit {
			// Implicit system-versioning columns are not listed in
			// information_schema.COLUMNS.
			for _, n := range []string{"row_start", "row_end"} {
				t.Columns = append(t.Columns, column{Name: n, DataType: "timestamp", kind: kindTemporal})
			}
		}
	}
	return nil
}

func readKeys(ctx context.Context, conn *sql.Conn, byName map[[2]string]*tableInfo) error {
	rows, err := conn.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, "+
		"IFNULL(COLUMN_NAME,''), IFNULL(SUB_PART,0) FROM information_schema.STATISTICS WHERE "+
		schemaFilterSQL("TABLE_SCHEMA")+" ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX")
	if err != nil {
		return fmt.Errorf("list indexes: %w", err)
	}
	type idx struct {
		name   string
		unique bool
		cols   []string
		ok     bool // every part is a whole column
	}
	keys := map[*tableInfo][]*idx{}
	for rows.Next() {
		var s, tn, in, cn string
		var nonUnique, subPart int64
		if err := rows.Scan(&s, &tn, &in, &nonUnique, &cn, &subPart); err != nil {
			rows.Close()
			return err
		}
		t := byName[[2]string{s, tn}]
		if t == nil {
			continue
		}
		l := keys[t]
		if len(l) == 0 || l[len(l)-1].name != in {
			l = append(l, &idx{name: in, unique: nonUnique == 0, ok: true})
			keys[t] = l
		}
		k := l[len(l)-1]
		k.cols = append(k.cols, cn)
		if cn == "" || subPart != 0 {
			k.ok = false
		}
		t.indexes[in] = append(t.indexes[in], cn)
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("list indexes: %w", err)
	}
	for t, l := range keys {
		if t.Versioned {
			continue // history rows repeat the key: a versioned table is not split
		}
		// PRIMARY first, then unique keys of NOT NULL columns by name.
		sort.SliceStable(l, func(i, j int) bool { return l[i].name == "PRIMARY" && l[j].name != "PRIMARY" })
		for _, k := range l {
			if !k.unique || !k.ok {
				continue
			}
			cols, good := keyColumns(t, k.cols)
			if good {
				t.Key, t.KeyName = cols, k.name
				break
			}
		}
	}
	return nil
}

// keyColumns returns the dumped columns named by cols when each is NOT
// NULL and of a type whose SQL literal compares as ORDER BY sorts.
func keyColumns(t *tableInfo, names []string) ([]column, bool) {
	var out []column
	for _, n := range names {
		var c *column
		for i := range t.Columns {
			if t.Columns[i].Name == n {
				c = &t.Columns[i]
			}
		}
		if c == nil || c.Nullable || !splittable(c.DataType) {
			return nil, false
		}
		out = append(out, *c)
	}
	return out, len(out) > 0
}

func splittable(dt string) bool {
	switch dt {
	case "tinyint", "smallint", "mediumint", "int", "bigint", "decimal",
		"char", "varchar", "binary", "varbinary",
		"date", "datetime", "timestamp", "time", "year":
		return true
	}
	return false
}

func readForeignKeys(ctx context.Context, conn *sql.Conn, byName map[[2]string]*tableInfo) error {
	rows, err := conn.QueryContext(ctx, "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA, "+
		"REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS")
	if err != nil {
		return fmt.Errorf("list foreign keys: %w", err)
	}
	for rows.Next() {
		var s, tn, rs, rt string
		if err := rows.Scan(&s, &tn, &rs, &rt); err != nil {
			rows.Close()
			return err
		}
		if t := byName[[2]string{s, tn}]; t != nil {
			t.hasFK = true
		}
		if t := byName[[2]string{rs, rt}]; t != nil {
			t.hasFK = true
		}
	}
	return closeRows(rows)
}

var indexLine = regexp.MustCompile("^(UNIQUE |FULLTEXT |SPATIAL )?KEY `((?:[^`]|``)*)` ")

// deferredIndexes picks the secondary index lines of the CREATE TABLE
// that a load may add after the data: none when the table takes part in a
// foreign key (either side) or is system-versioned; never the primary
// key, the key that splits the dump, or a key that starts with the
// AUTO_INCREMENT column (the server requires one).
func deferredIndexes(t *tableInfo) []string {
	if t.hasFK || t.Versioned {
		return nil
	}
	autoInc := ""
	for _, c := range t.Columns {
		if c.AutoInc {
			autoInc = c.Name
		}
	}
	var out []string
	for _, line := range strings.Split(t.Create, "\n") {
		l := strings.TrimSuffix(strings.TrimLeft(line, " "), ",")
		m := indexLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		name := strings.ReplaceAll(m[2], "``", "`")
		if name == t.KeyName {
			continue
		}
		if cols := t.indexes[name]; autoInc != "" && len(cols) > 0 && cols[0] == autoInc {
			continue
		}
		out = append(out, l)
	}
	return out
}

// readObjects lists views' dependencies aside, routines, triggers and
// events of the wanted schemas.
func readObjects(ctx context.Context, conn *sql.Conn, c *catalog, wanted map[string]bool, opt *DumpOptions) error {
	rows, err := conn.QueryContext(ctx, "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "+
		"WHERE ROUTINE_TYPE IN ('PROCEDURE','FUNCTION') AND "+schemaFilterSQL("ROUTINE_SCHEMA")+
		" ORDER BY ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE")
	if err != nil {
		return fmt.Errorf("list routines: %w", err)
	}
	for rows.Next() {
		var o objectRef
		if err := rows.Scan(&o.Schema, &o.Name, &o.Type); err != nil {
			rows.Close()
			return err
		}
		if wanted[o.Schema] {
			c.Routines = append(c.Routines, o)
		}
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("list routines: %w", err)
	}
	tables := map[[2]string]bool{}
	for _, t := range c.Tables {
		tables[[2]string{t.Schema, t.Name}] = true
	}
	rows, err = conn.QueryContext(ctx, "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "+
		"WHERE "+schemaFilterSQL("TRIGGER_SCHEMA")+" ORDER BY TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER")
	if err != nil {
		return fmt.Errorf("list triggers: %w", err)
	}
	for rows.Next() {
		var o objectRef
		if err := rows.Scan(&o.Schema, &o.Name, &o.Table); err != nil {
			rows.Close()
			return err
		}
		if tables[[2]string{o.Schema, o.Table}] {
			c.Triggers = append(c.Triggers, o)
		}
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("list triggers: %w", err)
	}
	rows, err = conn.QueryContext(ctx, "SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS WHERE "+
		schemaFilterSQL("EVENT_SCHEMA")+" ORDER BY EVENT_SCHEMA, EVENT_NAME")
	if err != nil {
		return fmt.Errorf("list events: %w", err)
	}
	for rows.Next() {
		var o objectRef
		if err := rows.Scan(&o.Schema, &o.Name); err != nil {
			rows.Close()
			return err
		}
		if wanted[o.Schema] {
			c.Events = append(c.Events, o)
		}
	}
	return closeRows(rows)
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// showCreate runs a SHOW CREATE statement and returns its column col
// (0-based) as text.
func showCreate(ctx context.Context, conn *sql.Conn, q string, col int) (string, error) {
	vals, err := showRow(ctx, conn, q)
	if err != nil {
		return "", err
	}
	if col >= len(vals) {
		return "", fmt.Errorf("%s: %d columns", q, len(vals))
	}
	if vals[col] == nil {
		return "", fmt.Errorf("%s: no definition (does the dump user have the privilege to see it?)", q)
	}
	return string(vals[col]), nil
}

// showRow runs a statement that returns one row and gives its columns as
// bytes (nil for NULL), keyed by position.
func showRow(ctx context.Context, conn *sql.Conn, q string) ([][]byte, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: no row", q)
	}
	raw := make([]rawValue, len(cols))
	if err := scanRaw(rows, raw, make([]any, len(cols))); err != nil {
		return nil, err
	}
	out := make([][]byte, len(cols))
	for i := range raw {
		if v := raw[i].value(); v != nil {
			out[i] = append([]byte{}, v...)
		}
	}
	return out, closeRows(rows)
}

// quoteString returns s as a single-quoted SQL string literal, escaped the
// way the data files are.
func quoteString(s string) string {
	return string(appendQuoted(nil, []byte(s)))
}
