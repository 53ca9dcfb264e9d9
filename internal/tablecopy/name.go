// Package tablecopy brings one table back from a scratch server (a
// restored backup, rolled forward to a point in time) into a live server
// under a chosen name, without stopping or locking anything of the live
// server but the new table: InnoDB tablespaces move as files
// (FLUSH TABLES ... FOR EXPORT on the scratch server, DISCARD and IMPORT
// TABLESPACE on the live one); tables whose tablespace cannot move go
// through copyLogical. It knows nothing of Temporal.
package tablecopy

import (
	"errors"
	"fmt"
	"strings"
)

// TableName is schema.table.
type TableName struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
}

// maxIdent is the longest schema or table name the servers accept.
const maxIdent = 64

// ParseTableName parses "schema.table". Either part may be quoted with
// backticks, a backtick inside doubled, which a name holding a dot or a
// backtick needs: `my.db`.orders.
func ParseTableName(s string) (TableName, error) {
	parts, err := splitIdents(s)
	if err != nil {
		return TableName{}, fmt.Errorf("table name %q: %w", s, err)
	}
	if len(parts) != 2 {
		return TableName{}, fmt.Errorf("table name %q must be schema.table (quote a part holding a dot with backticks: `a.b`.t)", s)
	}
	n := TableName{Schema: parts[0], Table: parts[1]}
	if err := n.Validate(); err != nil {
		return TableName{}, err
	}
	return n, nil
}

// Validate checks that both parts are non-empty, at most 64 characters,
// and end in no space (which the servers refuse).
func (n TableName) Validate() error {
	for _, p := range []string{n.Schema, n.Table} {
		switch {
		case p == "":
			return fmt.Errorf("table name %q must be schema.table, both parts non-empty", n.String())
		case len([]rune(p)) > maxIdent:
			return fmt.Errorf("name %q is longer than %d characters", p, maxIdent)
		case strings.HasSuffix(p, " "):
			return fmt.Errorf("name %q ends in a space, which the server refuses", p)
		case strings.ContainsRune(p, 0):
			return fmt.Errorf("name %q holds a NUL byte", p)
		}
	}
	return nil
}

// String is schema.table, quoted where a part needs it to parse back.
func (n TableName) String() string {
	q := func(s string) string {
		if s == "" || strings.ContainsAny(s, ".`") {
			return QuoteIdent(s)
		}
		return s
	}
	return q(n.Schema) + "." + q(n.Table)
}

// Quoted is `schema`.`table`, for SQL.
func (n TableName) Quoted() string { return QuoteIdent(n.Schema) + "." + QuoteIdent(n.Table) }

// QuoteIdent quotes an identifier with backticks.
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// splitIdents splits a dotted name whose parts may be backtick-quoted.
func splitIdents(s string) ([]string, error) {
	var parts []string
	for i := 0; ; {
		var part string
		if i < len(s) && s[i] == '`' {
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, errors.New("unterminated backtick")
				}
				if s[j] == '`' {
					if j+1 < len(s) && s[j+1] == '`' {
						b.WriteByte('`')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			part, i = b.String(), j+1
			if i < len(s) && s[i] != '.' {
				return nil, fmt.Errorf("unexpected %q after a quoted name", s[i:])
			}
		} else {
			end := strings.IndexByte(s[i:], '.')
			if end < 0 {
				end = len(s) - i
			}
			part = s[i : i+end]
			if strings.ContainsRune(part, '`') {
				return nil, errors.New("a backtick inside an unquoted name")
			}
			i += end
		}
		parts = append(parts, part)
		if i >= len(s) {
			return parts, nil
		}
		i++ // the dot
		if i >= len(s) {
			return nil, errors.New("ends in a dot")
		}
	}
}

// WorkName is the name the restored table has on the live server until it
// is complete and verified: a name of ASCII letters, digits and '_' only
// (so that its files' names are the name itself under both servers'
// file-name encoding, which only ASCII letters, digits and '_' pass
// unchanged), unique to the restore id, in the destination's schema.
func WorkName(dst TableName, restoreID string) TableName {
	return TableName{Schema: dst.Schema, Table: asciiName("strata_restore_", restoreID)}
}

// ExportName is where the scratch server's copy of the source table is
// moved before it is exported: an ASCII schema and table, whose file is
// <datadir>/strata_export/<table>.ibd whatever the source's name.
func ExportName(restoreID string) TableName {
	return TableName{Schema: "strata_export", Table: asciiName("t_", restoreID)}
}

// ReplacedName is the name an existing destination table has for the
// moment between the swap and its drop (Replace).
func ReplacedName(dst TableName, restoreID string) TableName {
	return TableName{Schema: dst.Schema, Table: asciiName("strata_replaced_", restoreID)}
}

// asciiName is prefix + id, lower-cased, every byte outside [a-z0-9_]
// made '_', cut to 64 characters.
func asciiName(prefix, id string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, c := range []byte(strings.ToLower(id)) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > maxIdent {
		s = s[:maxIdent]
	}
	return s
}

// IsFileSafe reports whether s is its own file name under the servers'
// file-name encoding (ASCII letters, digits and '_' only).
func IsFileSafe(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
			return false
		}
	}
	return true
}
