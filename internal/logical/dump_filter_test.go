package logical

import "testing"

func TestMatchFilter(t *testing.T) {
	for _, c := range []struct {
		inc, exc      []string
		schema, table string
		want          bool
	}{
		{nil, nil, "shop", "orders", true},
		{[]string{"shop.*"}, nil, "shop", "orders", true},
		{[]string{"shop.*"}, nil, "shopx", "orders", false},
		{[]string{"shop"}, nil, "shop", "orders", true}, // no dot: the whole schema
		{[]string{"*.orders"}, nil, "a", "orders", true},
		{[]string{"*.orders"}, nil, "a", "orders2", false},
		{[]string{"shop.ord?rs"}, nil, "shop", "orders", true},
		{[]string{"shop.*"}, []string{"shop.tmp_*"}, "shop", "tmp_1", false},
		{[]string{"shop.*"}, []string{"shop.tmp_*"}, "shop", "orders", true},
		{nil, []string{"shop"}, "shop", "orders", false},
		// A dot in a name: escaped in the pattern, and matched by '*'.
		{[]string{`sh\.op.t`}, nil, "sh.op", "t", true},
		{[]string{`sh\.op.t`}, nil, "sh", "op.t", false},
		{[]string{"sh.*"}, nil, "sh", "op.t", true},
		// '*' matches '/' (path.Match alone would not).
		{[]string{"a.*"}, nil, "a", "x/y", true},
		{[]string{"a.x*y"}, nil, "a", "x/y", true},
		{[]string{"a.x?y"}, nil, "a", "x/y", true},
		// Unicode, spaces, backticks, percent are plain characters.
		{[]string{"ш к.т`%"}, nil, "ш к", "т`%", true},
		{[]string{"a.[xy]"}, nil, "a", "y", true},
		{[]string{"a.[xy]"}, nil, "a", "z", false},
		// A malformed pattern matches nothing.
		{[]string{"a.[x"}, nil, "a", "x", false},
		// Schema questions (table "").
		{[]string{"shop.orders"}, nil, "shop", "", true},
		{[]string{"shop.orders"}, nil, "other", "", false},
		{nil, []string{"shop.orders"}, "shop", "", true}, // excluding one table keeps the schema
		{nil, []string{"shop.*"}, "shop", "", false},
		{nil, []string{"shop"}, "shop", "", false},
	} {
		if got := MatchFilter(c.inc, c.exc, c.schema, c.table); got != c.want {
			t.Errorf("MatchFilter(%q, %q, %q, %q) = %v, want %v", c.inc, c.exc, c.schema, c.table, got, c.want)
		}
	}
}
