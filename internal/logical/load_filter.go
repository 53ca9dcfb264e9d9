package logical

import (
	"fmt"
	"path"
	"strings"
)

// splitName splits "schema.object" at the first dot outside backticks;
// either part may be backtick-quoted ("`my.db`.`t`"), a quoted part is
// unquoted.
func splitName(s string) (schema, object string, err error) {
	parts, err := splitQuoted(s, '.')
	if err != nil {
		return "", "", err
	}
	if len(parts) != 2 {
		return "", "", fmt.Errorf("%q is not schema.table (quote names that hold a dot with backticks: `my.db`.`t`)", s)
	}
	schema, err = unquoteIdent(parts[0])
	if err != nil {
		return "", "", err
	}
	object, err = unquoteIdent(parts[1])
	if err != nil {
		return "", "", err
	}
	if schema == "" || object == "" {
		return "", "", fmt.Errorf("%q: empty schema or table name", s)
	}
	return schema, object, nil
}

// splitQuoted splits s at each sep outside backticks.
func splitQuoted(s string, sep byte) ([]string, error) {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '`':
			quoted = !quoted // a doubled `` toggles twice
		case c == sep && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, fmt.Errorf("%q: unterminated backtick", s)
	}
	return append(parts, s[start:]), nil
}

func unquoteIdent(s string) (string, error) {
	if !strings.HasPrefix(s, "`") {
		if strings.Contains(s, "`") {
			return "", fmt.Errorf("%q: a backtick inside an unquoted name", s)
		}
		return s, nil
	}
	if len(s) < 2 || !strings.HasSuffix(s, "`") {
		return "", fmt.Errorf("%q: unterminated backtick", s)
	}
	inner := s[1 : len(s)-1]
	if strings.Contains(strings.ReplaceAll(inner, "``", ""), "`") {
		return "", fmt.Errorf("%q: a lone backtick inside a quoted name (write it twice)", s)
	}
	return strings.ReplaceAll(inner, "``", "`"), nil
}

// ParseRename parses a rename "schema.table=schema.table" (the option
// --rename shop.orders=shop.orders_restored). Names that hold a dot or '='
// are backtick-quoted.
func ParseRename(s string) (from, to [2]string, err error) {
	parts, err := splitQuoted(s, '=')
	if err != nil {
		return from, to, fmt.Errorf("rename %s", err)
	}
	if len(parts) != 2 {
		return from, to, fmt.Errorf("rename %q: want schema.table=schema.table (e.g. shop.orders=shop.orders_restored)", s)
	}
	fs, ft, err := splitName(strings.TrimSpace(parts[0]))
	if err != nil {
		return from, to, fmt.Errorf("rename %q: source: %v", s, err)
	}
	ts, tt, err := splitName(strings.TrimSpace(parts[1]))
	if err != nil {
		return from, to, fmt.Errorf("rename %q: target: %v", s, err)
	}
	from, to = [2]string{fs, ft}, [2]string{ts, tt}
	if from == to {
		return from, to, fmt.Errorf("rename %q: source and target are the same table", s)
	}
	return from, to, nil
}

// filter is a parsed include/exclude list.
type filter struct {
	include, exclude [][2]string // schema pattern, table pattern
}

// parseFilter parses "schema.table" patterns with path.Match's syntax
// (* ? [...] \), matched separately against the schema and the table name
// (so a '.' or '/' in a name is an ordinary character for '*' and '?'). A
// pattern splits at its first '.' that is neither escaped (\.) nor inside
// a backtick-quoted part; a part written in backticks ("`my.db`") is a
// literal name, in which * and ? are plain. A pattern without a dot means
// every table of the schemas it matches ("shop" = "shop.*").
func parseFilter(include, exclude []string) (*filter, error) {
	f := &filter{}
	for _, l := range []struct {
		in  []string
		out *[][2]string
	}{{include, &f.include}, {exclude, &f.exclude}} {
		for _, p := range l.in {
			pat, err := parsePattern(p)
			if err != nil {
				return nil, err
			}
			*l.out = append(*l.out, pat)
		}
	}
	return f, nil
}

// CheckFilter checks include or exclude patterns (see parseFilter).
func CheckFilter(patterns []string) error {
	_, err := parseFilter(patterns, nil)
	return err
}

// parsePattern parses one filter pattern into its schema and table globs.
func parsePattern(p string) ([2]string, error) {
	split, quoted := -1, false
	for i := 0; i < len(p) && split < 0; i++ {
		switch c := p[i]; {
		case c == '\\' && !quoted:
			i++
		case c == '`' && (quoted || i == 0 || p[i-1] == '.'):
			quoted = !quoted // a doubled `` toggles twice
		case c == '.' && !quoted:
			split = i
		}
	}
	if quoted {
		return [2]string{}, fmt.Errorf("filter pattern %q: unterminated backtick", p)
	}
	pat := [2]string{p, "*"}
	if split >= 0 {
		pat = [2]string{p[:split], p[split+1:]}
	}
	for i := range pat {
		if len(pat[i]) >= 2 && strings.HasPrefix(pat[i], "`") && strings.HasSuffix(pat[i], "`") {
			u, err := unquoteIdent(pat[i])
			if err != nil {
				return [2]string{}, fmt.Errorf("filter pattern %v", err)
			}
			pat[i] = matchQuote(u)
		}
		if pat[i] == "" {
			return [2]string{}, fmt.Errorf("filter pattern %q: empty schema or table part", p)
		}
		if _, err := path.Match(pat[i], ""); err != nil {
			return [2]string{}, fmt.Errorf("filter pattern %q: %v", p, err)
		}
	}
	return pat, nil
}

// excludesSchema reports whether an exclude pattern takes the whole schema
// (its table part is "*").
func (f *filter) excludesSchema(schema string) bool {
	for _, p := range f.exclude {
		if p[1] == "*" && loadGlobMatch(p[0], schema) {
			return true
		}
	}
	return false
}

// matchQuote escapes the pattern characters of a quoted name.
func matchQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// match reports whether schema.table passes the filter: it matches an
// include pattern (or there are none) and no exclude pattern.
func (f *filter) match(schema, table string) bool {
	m := func(pats [][2]string) bool {
		for _, p := range pats {
			if loadGlobMatch(p[0], schema) && loadGlobMatch(p[1], table) {
				return true
			}
		}
		return false
	}
	if len(f.include) > 0 && !m(f.include) {
		return false
	}
	return !m(f.exclude)
}

// matchSchema reports whether any table of schema can pass the filter.
func (f *filter) matchSchema(schema string) bool {
	if len(f.include) == 0 {
		return true
	}
	for _, p := range f.include {
		if loadGlobMatch(p[0], schema) {
			return true
		}
	}
	return false
}

// loadGlobMatch is path.Match where '/' is an ordinary character.
func loadGlobMatch(pattern, name string) bool {
	const slash = "\x00"
	ok, _ := path.Match(strings.ReplaceAll(pattern, "/", slash), strings.ReplaceAll(name, "/", slash))
	return ok
}

// matchFilter reports whether schema.table passes the include and exclude
// patterns (see parseFilter); invalid patterns match nothing.
func matchFilter(include, exclude []string, schema, table string) bool {
	f, err := parseFilter(include, exclude)
	if err != nil {
		return false
	}
	return f.match(schema, table)
}
