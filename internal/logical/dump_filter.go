package logical

// MatchFilter reports whether the table (or view) schema.table is selected
// by include and exclude patterns: it is when include is empty or one of
// its patterns matches, and no exclude pattern matches.
//
// A pattern is "schema.table", split at its first '.' that is neither
// escaped by a backslash nor inside a backtick-quoted part; each side is a
// path.Match glob (*, ?, [...], \ escapes), matched against the real name,
// in which '*' also matches '/', or a literal name in backticks. A pattern
// without a '.' is "schema.*". So "shop.*" is every table of shop,
// "*.orders" every table named orders, "shop.order\.s" and "shop.`order.s`"
// the table "order.s".
//
// With table == "" MatchFilter asks about the schema itself (its CREATE
// DATABASE, routines and events): the schema is selected when include is
// empty or the schema side of one include pattern matches it, and it is
// not excluded as a whole by an exclude pattern whose table side is "*".
// A malformed pattern matches nothing.
func MatchFilter(include, exclude []string, schema, table string) bool {
	f, err := parseFilter(include, exclude)
	if err != nil {
		return false
	}
	if table == "" {
		return f.matchSchema(schema) && !f.excludesSchema(schema)
	}
	return f.match(schema, table)
}
