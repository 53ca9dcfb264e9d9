package logical

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/strata-backup/strata/internal/flavor"
)

// objectFile builds a schema object file: the line "DELIMITER ;;", then
// statements each ended by a line ";;".
type objectFile struct {
	b   bytes.Buffer
	err error
}

func newObjectFile() *objectFile {
	o := &objectFile{}
	o.b.WriteString("DELIMITER ;;\n")
	return o
}

func (o *objectFile) stmt(s string) {
	s = strings.TrimRight(s, "\n")
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == ";;" && o.err == nil {
			o.err = fmt.Errorf("a statement has a line \";;\", which the dump format uses as its delimiter: %.80q", s)
		}
	}
	o.b.WriteString(s)
	o.b.WriteString("\n;;\n")
}

func (o *objectFile) bytes() ([]byte, error) { return o.b.Bytes(), o.err }

const setNames = "SET NAMES utf8mb4"

// createSQLMode is the session a table or sequence file creates it in:
// a lenient sql_mode, so zero-date defaults are accepted, and no foreign
// key checks, so a table may be created before the one it references.
const createSQLMode = "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', SESSION foreign_key_checks = 0"

// contextStmt is the session a stored object was created in, as SHOW
// CREATE reports it.
func contextStmt(sqlMode, charsetClient, collation []byte) string {
	return fmt.Sprintf("SET SESSION sql_mode = %s, SESSION character_set_client = %s, "+
		"SESSION character_set_results = %s, SESSION collation_connection = %s",
		quoteString(string(sqlMode)), quoteString(string(charsetClient)), quoteString(string(charsetClient)),
		quoteString(string(collation)))
}

func databaseFile(ctx context.Context, conn *sql.Conn, schema string) (*File, []byte, error) {
	def, err := showCreate(ctx, conn, "SHOW CREATE DATABASE IF NOT EXISTS "+QuoteIdent(schema), 1)
	if err != nil {
		return nil, nil, fmt.Errorf("database %s: %w", QuoteIdent(schema), err)
	}
	o := newObjectFile()
	o.stmt(setNames)
	o.stmt(def)
	b, err := o.bytes()
	return &File{Name: EncodeName(schema) + "/@database.sql", Kind: KindDatabase, Schema: schema}, b, err
}

func tableFile(t *tableInfo) (*File, []byte, error) {
	names := []string{t.Name}
	for _, c := range t.Columns {
		names = append(names, c.Name)
	}
	for _, n := range names {
		if strings.ContainsAny(n, "\n\r") {
			return nil, nil, fmt.Errorf("the name %q has a line break, which the dump format cannot write (INSERTs are one per line)", n)
		}
	}
	o := newObjectFile()
	o.stmt(setNames)
	o.stmt(createSQLMode)
	o.stmt(t.Create)
	b, err := o.bytes()
	meta := &TableMeta{Engine: t.Engine, Versioned: t.Versioned, DeferredIndexes: t.Deferred}
	for _, c := range t.Columns {
		meta.Columns = append(meta.Columns, c.Name)
	}
	for _, c := range t.Key {
		meta.PrimaryKey = append(meta.PrimaryKey, c.Name)
	}
	return &File{Name: EncodeName(t.Schema) + "/" + EncodeName(t.Name) + ".table.sql", Kind: KindTable,
		Schema: t.Schema, Object: t.Name, Table: meta}, b, err
}

// sequenceFile is CREATE SEQUENCE and a SETVAL to the state read under the
// lock: the next value a NEXTVAL returns is the first one not cached, as
// after a server restart.
func sequenceFile(ctx context.Context, conn *sql.Conn, s objectRef) (*File, []byte, error) {
	def, err := showCreate(ctx, conn, "SHOW CREATE SEQUENCE "+QuoteName(s.Schema, s.Name), 1)
	if err != nil {
		return nil, nil, fmt.Errorf("sequence %s: %w", QuoteName(s.Schema, s.Name), err)
	}
	var next, round string
	if err := conn.QueryRowContext(ctx, "SELECT next_not_cached_value, cycle_count FROM "+QuoteName(s.Schema, s.Name)).
		Scan(&next, &round); err != nil {
		return nil, nil, fmt.Errorf("sequence %s: %w", QuoteName(s.Schema, s.Name), err)
	}
	o := newObjectFile()
	o.stmt(setNames)
	o.stmt(createSQLMode)
	o.stmt(def)
	o.stmt(fmt.Sprintf("SELECT SETVAL(%s, %s, 0, %s)", QuoteIdent(s.Name), next, round))
	b, err := o.bytes()
	return &File{Name: EncodeName(s.Schema) + "/" + EncodeName(s.Name) + ".sequence.sql", Kind: KindSequence,
		Schema: s.Schema, Object: s.Name}, b, err
}

// viewFile reads SHOW CREATE VIEW with the view's schema as the current
// one, so that the view's own name is unqualified.
func viewFile(ctx context.Context, conn *sql.Conn, v objectRef) (*File, []byte, error) {
	if _, err := conn.ExecContext(ctx, "USE "+QuoteIdent(v.Schema)); err != nil {
		return nil, nil, fmt.Errorf("view %s: %w", QuoteName(v.Schema, v.Name), err)
	}
	vals, err := showRow(ctx, conn, "SHOW CREATE VIEW "+QuoteIdent(v.Name))
	if err == nil && (len(vals) < 4 || vals[1] == nil) {
		err = fmt.Errorf("no definition (does the dump user have SHOW VIEW?)")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("view %s: %w", QuoteName(v.Schema, v.Name), err)
	}
	o := newObjectFile()
	o.stmt(setNames)
	o.stmt(contextStmt(nil, vals[2], vals[3]))
	o.stmt(string(vals[1]))
	b, err := o.bytes()
	return &File{Name: EncodeName(v.Schema) + "/" + EncodeName(v.Name) + ".view.sql", Kind: KindView,
		Schema: v.Schema, Object: v.Name}, b, err
}

func routineFile(ctx context.Context, conn *sql.Conn, r objectRef) (*File, []byte, error) {
	vals, err := showRow(ctx, conn, "SHOW CREATE "+r.Type+" "+QuoteName(r.Schema, r.Name))
	if err == nil && (len(vals) < 5 || vals[2] == nil) {
		err = fmt.Errorf("no definition (the dump user needs SELECT on mysql.proc or SHOW_ROUTINE)")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", strings.ToLower(r.Type), QuoteName(r.Schema, r.Name), err)
	}
	o := newObjectFile()
	o.stmt(setNames)
	o.stmt(contextStmt(vals[1], vals[3], vals[4]))
	o.stmt(string(vals[2]))
	b, err := o.bytes()
	return &File{Name: EncodeName(r.Schema) + "/" + EncodeName(r.Name) + "." + strings.ToLower(r.Type) + ".routine.sql",
		Kind: KindRoutine, Schema: r.Schema, Object: r.Name}, b, err
}

func triggerFile(ctx context.Context, conn *sql.Conn, t objectRef) (*File, []byte, error) {
	vals, err := showRow(ctx, conn, "SHOW CREATE TRIGGER "+QuoteName(t.Schema, t.Name))
	if err == nil && (len(vals) < 5 || vals[2] == nil) {
		err = fmt.Errorf("no definition (the dump user needs TRIGGER)")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("trigger %s: %w", QuoteName(t.Schema, t.Name), err)
	}
	o := newObjectFile()
	o.stmt(setNames)
	o.stmt(contextStmt(vals[1], vals[3], vals[4]))
	o.stmt(string(vals[2]))
	b, err := o.bytes()
	return &File{Name: EncodeName(t.Schema) + "/" + EncodeName(t.Name) + ".trigger.sql", Kind: KindTrigger,
		Schema: t.Schema, Object: t.Name}, b, err
}

func eventFile(ctx context.Context, conn *sql.Conn, e objectRef) (*File, []byte, error) {
	vals, err := showRow(ctx, conn, "SHOW CREATE EVENT "+QuoteName(e.Schema, e.Name))
	if err == nil && (len(vals) < 6 || vals[3] == nil) {
		err = fmt.Errorf("no definition (the dump user needs EVENT)")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("event %s: %w", QuoteName(e.Schema, e.Name), err)
	}
	o := newObjectFile()
	o.stmt(setNames)
	o.stmt(contextStmt(vals[1], vals[4], vals[5]))
	o.stmt("SET SESSION time_zone = " + quoteString(string(vals[2])))
	o.stmt(string(vals[3]))
	b, err := o.bytes()
	return &File{Name: EncodeName(e.Schema) + "/" + EncodeName(e.Name) + ".event.sql", Kind: KindEvent,
		Schema: e.Schema, Object: e.Name}, b, err
}

// usersFiles gives the accounts of the server but its own: the users
// file has all CREATE USER (and MariaDB CREATE ROLE) statements first,
// then the global, schema and role grants (so that a grant of a role finds
// the role); the grants file has the grants on single tables, columns and
// routines, which need those objects to exist (nil when there are none).
func usersFiles(ctx context.Context, conn *sql.Conn, fl flavor.Flavor) ([]pendingFile, error) {
	if fl.Name == flavor.MySQL {
		if _, err := conn.ExecContext(ctx, "SET SESSION print_identified_with_as_hex = ON"); err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
	}
	q := "SELECT User, Host, 'N' FROM mysql.user ORDER BY User, Host"
	if fl.Name == flavor.MariaDB {
		q = "SELECT User, Host, is_role FROM mysql.user ORDER BY User, Host"
	}
	type acct struct{ user, host, role string }
	var accts []acct
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("users: list accounts: %w", err)
	}
	for rows.Next() {
		var a acct
		if err := rows.Scan(&a.user, &a.host, &a.role); err != nil {
			rows.Close()
			return nil, err
		}
		accts = append(accts, a)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("users: list accounts: %w", err)
	}
	var creates, later, grants []string
	for _, a := range accts {
		name := quoteString(a.user) + "@" + quoteString(a.host)
		if systemAccounts[name] || a.user == "PUBLIC" && a.host == "" {
			continue
		}
		if a.role == "Y" {
			name = quoteString(a.user)
			creates = append(creates, "CREATE ROLE "+QuoteIdent(a.user))
		} else {
			def, err := showCreate(ctx, conn, "SHOW CREATE USER "+name, 0)
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == 1133 {
				// In mysql.user but not in the server's accounts: a host
				// name under skip-name-resolve, which the server ignores
				// (no one can log in as it), as mariadb-install-db leaves
				// ''@'<hostname>' and root@'<hostname>'.
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("users: %s: %w", name, err)
			}
			if strings.Contains(def, " DEFAULT ROLE ") {
				later = append(later, def) // names roles, which must exist first
			} else {
				creates = append(creates, def)
			}
		}
		rows, err := conn.QueryContext(ctx, "SHOW GRANTS FOR "+name)
		if err != nil {
			return nil, fmt.Errorf("users: SHOW GRANTS FOR %s: %w", name, err)
		}
		for rows.Next() {
			var g string
			if err := rows.Scan(&g); err != nil {
				rows.Close()
				return nil, err
			}
			grants = append(grants, g)
		}
		if err := closeRows(rows); err != nil {
			return nil, fmt.Errorf("users: SHOW GRANTS FOR %s: %w", name, err)
		}
	}
	o := newObjectFile()
	o.stmt(setNames)
	for _, s := range append(creates, later...) {
		o.stmt(s)
	}
	og := newObjectFile()
	og.stmt(setNames)
	objectGrants := 0
	for _, g := range grants {
		if objectGrant(g) {
			og.stmt(g)
			objectGrants++
		} else {
			o.stmt(g)
		}
	}
	b, err := o.bytes()
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	out := []pendingFile{{&File{Name: "@users.sql", Kind: KindUsers}, b}}
	if objectGrants > 0 {
		b, err := og.bytes()
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		out = append(out, pendingFile{&File{Name: "@grants.sql", Kind: KindGrants}, b})
	}
	return out, nil
}

// objectGrant reports whether a SHOW GRANTS line grants on one table,
// column or routine ("ON `s`.`t`", "ON PROCEDURE `s`.`p`"), not on *.*,
// a schema (`s`.*), a proxy or a role.
func objectGrant(g string) bool {
	// Find " ON " outside quotes and backticks.
	var quote byte
	on := -1
	for i := 0; i < len(g) && on < 0; i++ {
		c := g[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '`' || c == '\'' || c == '"':
			quote = c
		case strings.HasPrefix(g[i:], " ON "):
			on = i + 4
		}
	}
	if on < 0 {
		return false
	}
	rest := g[on:]
	for _, kw := range []string{"PROCEDURE ", "FUNCTION ", "PACKAGE BODY ", "PACKAGE "} {
		rest = strings.TrimPrefix(rest, kw)
	}
	// `schema`.`object`; *.* and `schema`.* are not object grants.
	_, n := backtickIdent(rest)
	if n == 0 {
		return false
	}
	rest = rest[n:]
	if !strings.HasPrefix(rest, ".") {
		return false
	}
	_, m := backtickIdent(rest[1:])
	return m > 0
}

// backtickIdent reads a backtick-quoted identifier at the start of s and
// returns it and its length in s (0: none).
func backtickIdent(s string) (string, int) {
	if !strings.HasPrefix(s, "`") {
		return "", 0
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == '`' {
			if i+1 < len(s) && s[i+1] == '`' {
				b.WriteByte('`')
				i++
				continue
			}
			return b.String(), i + 1
		}
		b.WriteByte(s[i])
	}
	return "", 0
}

// orderViews sorts view files so that a view comes after the views its
// definition names (SHOW CREATE VIEW writes `schema`.`view`, or `view` for
// one of the same schema); a name that only looks like a reference (a
// column) can only move a view later, and a cycle keeps name order.
func orderViews(files []*File, defs map[*File]string) []*File {
	sort.SliceStable(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	done := map[*File]bool{}
	visiting := map[*File]bool{}
	var out []*File
	var visit func(f *File)
	visit = func(f *File) {
		if done[f] || visiting[f] {
			return
		}
		visiting[f] = true
		for _, g := range files {
			if g != f && (strings.Contains(defs[f], QuoteName(g.Schema, g.Object)) ||
				g.Schema == f.Schema && strings.Contains(defs[f], QuoteIdent(g.Object))) {
				visit(g)
			}
		}
		visiting[f] = false
		done[f] = true
		out = append(out, f)
	}
	for _, f := range files {
		visit(f)
	}
	return out
}
