package logical

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// This file holds the text handling of the load: splitting schema object
// files into statements, reading data files line by line, and the few
// rewrites a load makes (qualified and renamed names, deferred indexes).

// splitStatements splits a schema object file ("DELIMITER ;;", then
// statements each ended by a line ";;") into its statements.
func splitStatements(name string, data []byte) ([]string, error) {
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	lines := strings.Split(text, "\n")
	i := 0
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	if i == len(lines) || strings.TrimSpace(lines[i]) != "DELIMITER ;;" {
		return nil, fmt.Errorf("%w: %s does not start with the line \"DELIMITER ;;\"", ErrCorrupt, name)
	}
	i++
	var stmts []string
	var cur []string
	for ; i < len(lines); i++ {
		l := lines[i]
		if l == ";;" {
			s := strings.TrimSpace(strings.Join(cur, "\n"))
			if s == "" {
				return nil, fmt.Errorf("%w: %s line %d: empty statement", ErrCorrupt, name, i+1)
			}
			stmts = append(stmts, s)
			cur = cur[:0]
			continue
		}
		cur = append(cur, l)
	}
	// What follows the last ";;" may only be blank lines and a closing
	// "DELIMITER ;".
	for _, l := range cur {
		if t := strings.TrimSpace(l); t != "" && t != "DELIMITER ;" {
			return nil, fmt.Errorf("%w: %s ends with a statement that has no closing \";;\" line", ErrCorrupt, name)
		}
	}
	return stmts, nil
}

// errLineTooLong is returned by readLine for a line longer than its limit.
var errLineTooLong = errors.New("line too long")

// readLine reads one line without its "\n" (a last line without one is
// returned too). It returns io.EOF only when no byte was left, and
// errLineTooLong, without reading on, when the line is longer than max.
func readLine(r *bufio.Reader, buf []byte, max int) ([]byte, error) {
	buf = buf[:0]
	for {
		part, err := r.ReadSlice('\n')
		if len(buf)+len(part) > max+1 { // +1: the "\n"
			return nil, errLineTooLong
		}
		buf = append(buf, part...)
		switch {
		case err == nil:
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 {
				return nil, io.EOF
			}
			return buf, nil
		default:
			return nil, err
		}
	}
}

// token is one lexical token of a statement's head.
type token struct {
	kind       byte   // 'w' word, 'i' backtick identifier, 's' quoted string, 'p' punctuation
	text       string // the word, the unquoted identifier or string, the punctuation
	start, end int    // byte span in the statement
}

// lex returns the tokens of s (comments and whitespace skipped), at most
// limit of them (0: all).
func lex(s string, limit int) ([]token, error) {
	var toks []token
	i := 0
	inVersioned := false // inside "/*!40100 ... */", whose text is SQL
	for i < len(s) && (limit == 0 || len(toks) < limit) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && strings.HasPrefix(s[i:], "/*!"):
			if inVersioned {
				return nil, fmt.Errorf("nested version comment")
			}
			i += 3
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			inVersioned = true
		case c == '*' && inVersioned && strings.HasPrefix(s[i:], "*/"):
			i += 2
			inVersioned = false
		case c == '/' && i+1 < len(s) && s[i+1] == '*' && !(i+2 < len(s) && s[i+2] == '!'):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return nil, fmt.Errorf("unterminated comment")
			}
			i += j + 4
		case c == '`':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated identifier")
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
			toks = append(toks, token{'i', b.String(), i, j + 1})
			i = j + 1
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated string")
				}
				if s[j] == '\\' && j+1 < len(s) {
					b.WriteByte(unescape(s[j+1]))
					j += 2
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						b.WriteByte(c)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{'s', b.String(), i, j + 1})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{'w', s[i:j], i, j})
			i = j
		default:
			toks = append(toks, token{'p', s[i : i+1], i, i + 1})
			i++
		}
	}
	return toks, nil
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case '0':
		return 0
	case 'Z':
		return 26
	}
	return c
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

func (t token) is(word string) bool { return t.kind == 'w' && strings.EqualFold(t.text, word) }

// isName: a token that can be an object name (a quoted or bare identifier).
func (t token) isName() bool { return t.kind == 'i' || t.kind == 'w' }

// createHead describes a CREATE statement: what it creates and where its
// name is.
type createHead struct {
	What       string // upper case: TABLE, VIEW, PROCEDURE, FUNCTION, TRIGGER, EVENT, SEQUENCE, DATABASE, SCHEMA, USER, ROLE
	Schema     string // the qualifier of the name, if any
	Name       string
	NameStart  int // span of the (possibly qualified) name
	NameEnd    int
	KindStart  int // span from the kind word up to the name (e.g. "TABLE IF NOT EXISTS ")
	TriggerTbl string
	toks       []token
	nameIdx    int // index in toks of the token after the name
}

var createKinds = map[string]bool{
	"TABLE": true, "VIEW": true, "PROCEDURE": true, "FUNCTION": true, "TRIGGER": true,
	"EVENT": true, "SEQUENCE": true, "DATABASE": true, "SCHEMA": true, "USER": true, "ROLE": true,
}

// parseCreate parses the head of a CREATE statement; ok is false when s is
// not a CREATE statement.
func parseCreate(s string) (h createHead, ok bool, err error) {
	toks, err := lex(s, 64)
	if err != nil {
		return h, false, err
	}
	if len(toks) == 0 || !toks[0].is("CREATE") {
		return h, false, nil
	}
	i := 1
	for ; i < len(toks); i++ {
		t := toks[i]
		if t.kind == 'w' && createKinds[strings.ToUpper(t.text)] {
			// "DEFINER = `u`@`h`" cannot hold a bare kind word except as a
			// user name, which is followed by '@'.
			if i+1 < len(toks) && toks[i+1].kind == 'p' && toks[i+1].text == "@" {
				continue
			}
			break
		}
	}
	if i >= len(toks) {
		return h, false, fmt.Errorf("CREATE statement without a known object kind")
	}
	h.What = strings.ToUpper(toks[i].text)
	h.KindStart = toks[i].start
	i++
	if i+2 < len(toks) && toks[i].is("IF") && toks[i+1].is("NOT") && toks[i+2].is("EXISTS") {
		i += 3
	}
	if i >= len(toks) || !toks[i].isName() {
		return h, false, fmt.Errorf("CREATE %s without a name", h.What)
	}
	h.NameStart = toks[i].start
	h.Name = toks[i].text
	h.NameEnd = toks[i].end
	i++
	if h.What != "USER" && h.What != "ROLE" && i+1 < len(toks) && toks[i].kind == 'p' && toks[i].text == "." && toks[i+1].isName() {
		h.Schema = h.Name
		h.Name = toks[i+1].text
		h.NameEnd = toks[i+1].end
		i += 2
	}
	h.toks, h.nameIdx = toks, i
	if h.What == "TRIGGER" {
		for j := i; j+1 < len(toks); j++ {
			if toks[j].is("ON") && toks[j+1].isName() {
				h.TriggerTbl = toks[j+1].text
				if j+3 < len(toks) && toks[j+2].kind == 'p' && toks[j+2].text == "." && toks[j+3].isName() {
					h.TriggerTbl = toks[j+3].text
				}
				break
			}
		}
		if h.TriggerTbl == "" {
			return h, false, fmt.Errorf("CREATE TRIGGER %s without ON <table>", QuoteIdent(h.Name))
		}
	}
	return h, true, nil
}

// account is a MySQL account, user@host.
type account struct{ User, Host string }

func (a account) String() string { return sqlString(a.User) + "@" + sqlString(a.Host) }

// parseAccount reads an account (user[@host]) at toks[i]; host is the
// host when none is written.
func parseAccount(toks []token, i int, host string) (account, bool) {
	if i >= len(toks) || (toks[i].kind != 'i' && toks[i].kind != 's' && toks[i].kind != 'w') {
		return account{}, false
	}
	a := account{User: toks[i].text, Host: host}
	if i+2 < len(toks) && toks[i+1].kind == 'p' && toks[i+1].text == "@" &&
		(toks[i+2].kind == 'i' || toks[i+2].kind == 's' || toks[i+2].kind == 'w') {
		a.Host = toks[i+2].text
	}
	return a, true
}

// statementAccount returns the account a statement of a users file is
// about: CREATE USER/ROLE, ALTER USER, GRANT ... TO, SET DEFAULT ROLE ...
// FOR. ok is false for statements about no account (SET NAMES, ...).
func statementAccount(s string) (a account, create bool, ok bool, err error) {
	toks, err := lex(s, 0)
	if err != nil {
		return a, false, false, err
	}
	if len(toks) < 2 {
		return a, false, false, nil
	}
	switch {
	case toks[0].is("CREATE") && (toks[1].is("USER") || toks[1].is("ROLE")):
		i := 2
		if i+2 < len(toks) && toks[i].is("IF") && toks[i+1].is("NOT") && toks[i+2].is("EXISTS") {
			i += 3
		}
		host := "%"
		if toks[1].is("ROLE") {
			host = "" // MariaDB roles have an empty host
		}
		a, ok = parseAccount(toks, i, host)
		return a, true, ok, nil
	case toks[0].is("ALTER") && toks[1].is("USER"):
		i := 2
		if i+1 < len(toks) && toks[i].is("IF") && toks[i+1].is("EXISTS") {
			i += 2
		}
		a, ok = parseAccount(toks, i, "%")
		return a, false, ok, nil
	case toks[0].is("GRANT"):
		for i := 1; i < len(toks); i++ {
			if toks[i].is("TO") {
				// SHOW GRANTS names a user with its host; without one
				// it is a (MariaDB) role.
				a, ok = parseAccount(toks, i+1, "")
				return a, false, ok, nil
			}
		}
	case toks[0].is("SET") && toks[1].is("DEFAULT") && len(toks) > 2 && toks[2].is("ROLE"):
		for i := 3; i < len(toks); i++ {
			if toks[i].is("FOR") {
				a, ok = parseAccount(toks, i+1, "%")
				return a, false, ok, nil
			}
		}
	}
	return a, false, false, nil
}

// sqlString quotes s as a SQL string literal.
func sqlString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`, "\n", `\n`, "\r", `\r`, "\x1a", `\Z`)
	return "'" + r.Replace(s) + "'"
}

// removeDeferredIndexes removes the index definition lines defs from a
// CREATE TABLE statement and fixes the comma of the line before where the
// last item was removed. Every def must be found exactly once.
func removeDeferredIndexes(create string, defs []string) (string, error) {
	if len(defs) == 0 {
		return create, nil
	}
	lines := strings.Split(create, "\n")
	want := make(map[string]int, len(defs))
	for _, d := range defs {
		want[strings.TrimSpace(d)]++
	}
	removed := make([]bool, len(lines))
	found := map[string]int{}
	for i, l := range lines {
		t := strings.TrimSpace(l)
		t = strings.TrimSuffix(t, ",")
		if want[t] > 0 && i > 0 && i < len(lines)-1 {
			removed[i] = true
			found[t]++
			want[t]--
		}
	}
	for d, n := range want {
		if n > 0 {
			return "", fmt.Errorf("%w: deferred index %q is not a line of the CREATE TABLE statement", ErrCorrupt, d)
		}
	}
	out := make([]string, 0, len(lines))
	for i, l := range lines {
		if removed[i] {
			if !strings.HasSuffix(strings.TrimRight(l, " \t"), ",") {
				// The last item went: the kept line before it must lose
				// its comma.
				if j := len(out) - 1; j >= 1 {
					out[j] = strings.TrimSuffix(strings.TrimRight(out[j], " \t"), ",")
				}
			}
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n"), nil
}

// indexName returns the name of an index definition line ("KEY `a` (...)",
// "UNIQUE KEY `u` (...)", "FULLTEXT KEY ...", "CONSTRAINT `c` UNIQUE ...").
func indexName(def string) string {
	toks, err := lex(def, 8)
	if err != nil {
		return ""
	}
	for _, t := range toks {
		if t.kind == 'i' {
			return t.text
		}
		if t.kind == 'p' && t.text == "(" {
			break
		}
	}
	return ""
}

// isFulltext reports whether an index definition is a FULLTEXT index
// (InnoDB adds one of those per ALTER TABLE).
func isFulltext(def string) bool {
	toks, _ := lex(def, 1)
	return len(toks) == 1 && toks[0].is("FULLTEXT")
}

// rangeWhere returns the condition selecting the rows of r over key, or ""
// for all rows.
func rangeWhere(key []string, r *Range) (string, error) {
	if len(r.Lower) != 0 && len(r.Lower) != len(key) || len(r.Upper) != 0 && len(r.Upper) != len(key) {
		return "", fmt.Errorf("%w: range bounds have %d and %d values for a key of %d columns", ErrCorrupt, len(r.Lower), len(r.Upper), len(key))
	}
	cols := make([]string, len(key))
	for i, k := range key {
		cols[i] = QuoteIdent(k)
	}
	tuple := "(" + strings.Join(cols, ",") + ")"
	var conds []string
	if len(r.Lower) > 0 {
		conds = append(conds, tuple+" > ("+strings.Join(r.Lower, ",")+")")
	}
	if len(r.Upper) > 0 {
		conds = append(conds, tuple+" <= ("+strings.Join(r.Upper, ",")+")")
	}
	return strings.Join(conds, " AND "), nil
}

// loadInsertPrefix is the start of every INSERT of a data file of table t.
func loadInsertPrefix(t string) []byte {
	return []byte("INSERT INTO " + QuoteIdent(t) + " (")
}

// isSessionStatement: a line of a data file that is not an INSERT but a
// session setting ("/*!40101 SET NAMES binary */;", "SET @@...=1;").
func isSessionStatement(line []byte) bool {
	return bytes.HasPrefix(line, []byte("/*!")) || bytes.HasPrefix(line, []byte("SET "))
}
