package logical

import (
	"path"
	"strings"
)

// MatchFilter reports whether the table (or view) schema.table is selected
// by include and exclude patterns: it is when include is empty or one of
// its patterns matches, and no exclude pattern matches.
//
// A pattern is "schema.table", split at its first '.' that is not escaped
// by a backslash; each side is a path.Match glob (*, ?, [...], \ escapes),
// matched against the real name, in which '*' also matches '/'. A pattern
// without a '.' is "schema.*". So "shop.*" is every table of shop,
// "*.orders" every table named orders, "shop.order\.s" the table "order.s".
//
// With table == "" MatchFilter asks about the schema itself (its CREATE
// DATABASE, routines and events): the schema is selected when include is
// empty or the schema side of one include pattern matches it, and it is
// not excluded as a whole by an exclude pattern whose table side is "*".
// A malformed pattern matches nothing.
func MatchFilter(include, exclude []string, schema, table string) bool {
	if table == "" {
		in := len(include) == 0
		for _, p := range include {
			ps, _ := splitPattern(p)
			if globMatch(ps, schema) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
		for _, p := range exclude {
			ps, pt := splitPattern(p)
			if pt == "*" && globMatch(ps, schema) {
				return false
			}
		}
		return true
	}
	in := len(include) == 0
	for _, p := range include {
		if matchPattern(p, schema, table) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range exclude {
		if matchPattern(p, schema, table) {
			return false
		}
	}
	return true
}

func matchPattern(p, schema, table string) bool {
	ps, pt := splitPattern(p)
	return globMatch(ps, schema) && globMatch(pt, table)
}

// splitPattern splits "schema.table" at the first unescaped '.'; without
// one the table side is "*".
func splitPattern(p string) (schema, table string) {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '.':
			return p[:i], p[i+1:]
		}
	}
	return p, "*"
}

// slashStandIn replaces '/' in names and patterns so that path.Match's '*'
// and '?' match it like any other character (a code point of the private
// use area, which no real identifier uses).
const slashStandIn = "\uE000"

func globMatch(pattern, name string) bool {
	ok, err := path.Match(strings.ReplaceAll(pattern, "/", slashStandIn), strings.ReplaceAll(name, "/", slashStandIn))
	return err == nil && ok
}

// validGlob reports whether p is a well-formed path.Match pattern.
func validGlob(p string) bool {
	_, err := path.Match(p, "")
	return err == nil
}
