package logical

import (
	"bytes"
	"strings"
	"testing"
)

func TestAppendValue(t *testing.T) {
	for _, c := range []struct {
		k    valueKind
		v    []byte
		want string
	}{
		{kindString, nil, "NULL"},
		{kindString, []byte{}, "''"},
		{kindString, []byte("a'b\\c\nd\re\x00f\x1ag\"h"), `'a\'b\\c\nd\re\0f\Zg"h'`},
		{kindNumber, []byte("-12.50"), "-12.50"},
		{kindHex, []byte{}, "X''"},
		{kindHex, []byte{0, 0xff, 0x10}, "0x00ff10"},
		{kindJSON, []byte(`{"a": "b'c"}`), `_utf8mb4'{"a": "b\'c"}'`},
		{kindTemporal, []byte("2024-01-02 03:04:05.000006"), "'2024-01-02 03:04:05.000006'"},
	} {
		if got := string(appendValue(nil, c.k, c.v)); got != c.want {
			t.Errorf("appendValue(%d, %q) = %s, want %s", c.k, c.v, got, c.want)
		}
	}
	if got := string(appendBound(nil, column{kind: kindString, Charset: "latin1"}, []byte("x"))); got != "_latin1'x'" {
		t.Errorf("bound = %s", got)
	}
	if got := string(appendBound(nil, column{kind: kindHex, Charset: "binary"}, []byte("x"))); got != "0x78" {
		t.Errorf("bound = %s", got)
	}
}

// Every byte value survives quoting with no raw line break.
func TestAppendQuotedAllBytes(t *testing.T) {
	var all []byte
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	q := appendQuoted(nil, all)
	if bytes.ContainsAny(q, "\n\r") {
		t.Fatalf("quoted value has a raw line break")
	}
	// Undo the escapes and compare.
	var back []byte
	for i := 1; i < len(q)-1; i++ {
		c := q[i]
		if c == '\\' {
			i++
			c = map[byte]byte{'0': 0, '\'': '\'', '\\': '\\', 'n': '\n', 'r': '\r', 'Z': 0x1a}[q[i]]
		} else if c == '\'' {
			t.Fatalf("unescaped quote at %d", i)
		}
		back = append(back, c)
	}
	if !bytes.Equal(back, all) {
		t.Fatalf("round trip differs")
	}
}

func TestDataFileStatements(t *testing.T) {
	cols := []column{{Name: "id", kind: kindNumber}, {Name: "s", kind: kindString}}
	df := newDataFile(dataHeader(false), insertPrefix("t`x", cols), 60)
	for i := 0; i < 5; i++ {
		df.add(cols, [][]byte{[]byte("1"), []byte("line\nbreak")})
	}
	df.add(cols, [][]byte{[]byte("2"), bytes.Repeat([]byte("z"), 100)}) // bigger than a statement
	out := string(df.bytes())
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != "/*!40101 SET NAMES binary */;" {
		t.Fatalf("first line %q", lines[0])
	}
	var rows int
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "/*!") {
			continue
		}
		if !strings.HasPrefix(l, "INSERT INTO `t``x` (`id`,`s`) VALUES (") || !strings.HasSuffix(l, ");") {
			t.Fatalf("bad statement line %q", l)
		}
		if len(l)+1 > 60 && strings.Count(l, "),(") > 0 {
			t.Fatalf("statement of %d bytes has several rows over the limit: %q", len(l), l)
		}
		rows += strings.Count(l, "),(") + 1
	}
	if rows != 6 || df.rows != 6 {
		t.Fatalf("rows %d/%d, want 6:\n%s", rows, df.rows, out)
	}
}

func TestRawValueKeepsEmptyApartFromNull(t *testing.T) {
	var r rawValue
	if err := r.Scan([]byte{}); err != nil || r.value() == nil || len(r.value()) != 0 {
		t.Fatalf("empty string scanned as %v", r.value())
	}
	if err := r.Scan(nil); err != nil || r.value() != nil {
		t.Fatalf("NULL scanned as %q", r.value())
	}
	if err := r.Scan(float32(0.1)); err != nil || string(r.value()) != "0.1" {
		t.Fatalf("float32 scanned as %q", r.value())
	}
	if err := r.Scan(uint64(18446744073709551615)); err != nil || string(r.value()) != "18446744073709551615" {
		t.Fatalf("uint64 scanned as %q", r.value())
	}
}

func TestDeferredIndexes(t *testing.T) {
	tb := &tableInfo{
		Columns: []column{{Name: "id", AutoInc: true}, {Name: "a"}, {Name: "b"}},
		KeyName: "PRIMARY",
		Create: "CREATE TABLE `t` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  `a` int,\n  `b` text,\n" +
			"  PRIMARY KEY (`a`),\n  KEY `by_id` (`id`),\n  UNIQUE KEY `u``q` (`a`,`b`(10)),\n  KEY `k` (`b`(20)) COMMENT 'x, y',\n" +
			"  FULLTEXT KEY `ft` (`b`)\n) ENGINE=InnoDB",
		indexes: map[string][]string{"PRIMARY": {"a"}, "by_id": {"id"}, "u`q": {"a", "b"}, "k": {"b"}, "ft": {"b"}},
	}
	got := deferredIndexes(tb)
	want := []string{"UNIQUE KEY `u``q` (`a`,`b`(10))", "KEY `k` (`b`(20)) COMMENT 'x, y'", "FULLTEXT KEY `ft` (`b`)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("deferred %q, want %q", got, want)
	}
	tb.hasFK = true
	if got := deferredIndexes(tb); got != nil {
		t.Fatalf("a table with foreign keys defers %q", got)
	}
}
