package logical

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSplitStatements(t *testing.T) {
	in := "DELIMITER ;;\nSET NAMES utf8mb4\n;;\nCREATE PROCEDURE `p`()\nBEGIN\n  SELECT 1;\n  SELECT ';;';\nEND\n;;\nDELIMITER ;\n"
	got, err := splitStatements("x", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SET NAMES utf8mb4", "CREATE PROCEDURE `p`()\nBEGIN\n  SELECT 1;\n  SELECT ';;';\nEND"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{
		"SET NAMES utf8mb4\n;;\n",                  // no DELIMITER line
		"DELIMITER ;;\nSET NAMES utf8mb4\n",        // no closing ;;
		"DELIMITER ;;\nSET NAMES utf8mb4\n;;\nX\n", // trailing statement without ;;
		"DELIMITER ;;\n;;\n",                       // empty statement
		"DELIMITER ;\nSET NAMES utf8mb4;\n;;\n",    // wrong delimiter
	} {
		if _, err := splitStatements("f.sql", []byte(bad)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "f.sql") {
			t.Errorf("%q: err = %v, want ErrCorrupt naming the file", bad, err)
		}
	}
}

func TestReadLine(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("ab\n"+strings.Repeat("x", 40)+"\nlast"), 16)
	var buf []byte
	l, err := readLine(r, buf, 50)
	if err != nil || string(l) != "ab" {
		t.Fatalf("%q %v", l, err)
	}
	l, err = readLine(r, l, 50) // longer than the bufio buffer
	if err != nil || string(l) != strings.Repeat("x", 40) {
		t.Fatalf("%q %v", l, err)
	}
	l, err = readLine(r, l, 50)
	if err != nil || string(l) != "last" {
		t.Fatalf("%q %v", l, err)
	}
	if _, err = readLine(r, l, 50); err != io.EOF {
		t.Fatalf("err = %v, want EOF", err)
	}
	r = bufio.NewReaderSize(strings.NewReader(strings.Repeat("y", 100)+"\n"), 16)
	if _, err := readLine(r, nil, 50); !errors.Is(err, errLineTooLong) {
		t.Fatalf("err = %v, want errLineTooLong", err)
	}
	// Exactly the limit is fine.
	r = bufio.NewReaderSize(strings.NewReader(strings.Repeat("y", 50)+"\n"), 16)
	if l, err := readLine(r, nil, 50); err != nil || len(l) != 50 {
		t.Fatalf("%d %v", len(l), err)
	}
}

func TestParseCreate(t *testing.T) {
	cases := []struct {
		stmt, what, schema, name, trigTbl string
	}{
		{"CREATE TABLE `orders` (\n  `id` int\n)", "TABLE", "", "orders", ""},
		{"CREATE TABLE IF NOT EXISTS `a``b`.`c d` (x int)", "TABLE", "a`b", "c d", ""},
		{"CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1", "VIEW", "", "v", ""},
		{"CREATE DEFINER=`view`@`%` PROCEDURE `p`(OUT n INT) BEGIN END", "PROCEDURE", "", "p", ""},
		{"CREATE DEFINER=`root`@`localhost` FUNCTION `f`(x INT) RETURNS int(11) RETURN x", "FUNCTION", "", "f", ""},
		{"CREATE DEFINER=`root`@`localhost` TRIGGER `trg` BEFORE INSERT ON `orders` FOR EACH ROW SET NEW.a = 1", "TRIGGER", "", "trg", "orders"},
		{"CREATE DEFINER=`root`@`localhost` TRIGGER `t2` AFTER UPDATE ON `s`.`odd ``x` FOR EACH ROW FOLLOWS `trg` SET @a = 1", "TRIGGER", "", "t2", "odd `x"},
		{"CREATE DEFINER=`root`@`localhost` EVENT `ev` ON SCHEDULE EVERY 1 DAY DO SELECT 1", "EVENT", "", "ev", ""},
		{"CREATE SEQUENCE `s` start with 1 minvalue 1 maxvalue 9 increment by 1 cache 10 nocycle ENGINE=InnoDB", "SEQUENCE", "", "s", ""},
		{"CREATE DATABASE `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */", "DATABASE", "", "shop", ""},
		{"/* a comment */ CREATE OR REPLACE VIEW v2 AS select 1", "VIEW", "", "v2", ""},
		{"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */", "DATABASE", "", "shop", ""},
		{"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER `t` BEFORE INSERT ON `x` FOR EACH ROW SET @a = 1 */", "TRIGGER", "", "t", "x"},
	}
	for _, c := range cases {
		h, ok, err := parseCreate(c.stmt)
		if err != nil || !ok {
			t.Errorf("%q: ok=%v err=%v", c.stmt, ok, err)
			continue
		}
		if h.What != c.what || h.Schema != c.schema || h.Name != c.name || h.TriggerTbl != c.trigTbl {
			t.Errorf("%q: got %s %q.%q on %q", c.stmt, h.What, h.Schema, h.Name, h.TriggerTbl)
		}
	}
	db := "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */"
	h, _, _ := parseCreate(db)
	if got := db[:h.KindStart] + "DATABASE IF NOT EXISTS `new`" + db[h.NameEnd:]; got != "CREATE DATABASE IF NOT EXISTS `new` /*!40100 DEFAULT CHARACTER SET utf8mb4 */" {
		t.Errorf("database rewrite: %q", got)
	}
	h, _, _ = parseCreate("CREATE TABLE `a``b`.`c d` (x int)")
	if got := "CREATE TABLE " + "`x`.`y`" + "CREATE TABLE `a``b`.`c d` (x int)"[h.NameEnd:]; got != "CREATE TABLE `x`.`y` (x int)" {
		t.Errorf("name span: %q", got)
	}
	for _, s := range []string{"SET NAMES utf8mb4", "SELECT SETVAL(`s`, 4)", "INSERT INTO t VALUES (1)"} {
		if _, ok, err := parseCreate(s); ok || err != nil {
			t.Errorf("%q: ok=%v err=%v, want not a CREATE", s, ok, err)
		}
	}
	for _, s := range []string{"CREATE TRIGGER `t` BEFORE INSERT FOR EACH ROW SET @a=1", "CREATE TABLE `x", "CREATE WIDGET `w`"} {
		if _, _, err := parseCreate(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

func TestStatementAccount(t *testing.T) {
	cases := []struct {
		stmt   string
		acc    account
		create bool
		ok     bool
	}{
		{"CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*14E65567ABDB5135D0CFD9A70B3032C179A49EE7'", account{"app", "%"}, true, true},
		{"CREATE USER IF NOT EXISTS 'o''k'@'10.0.0.%'", account{"o'k", "10.0.0.%"}, true, true},
		{"GRANT SELECT, INSERT (`to`) ON `shop`.`to` TO `app`@`%` WITH GRANT OPTION", account{"app", "%"}, false, true},
		{"GRANT `role1` TO `app`@`localhost`", account{"app", "localhost"}, false, true},
		{"CREATE ROLE `role1`", account{"role1", ""}, true, true},
		{"ALTER USER `app`@`%` PASSWORD EXPIRE", account{"app", "%"}, false, true},
		{"SET DEFAULT ROLE `role1` FOR `app`@`localhost`", account{"app", "localhost"}, false, true},
		{"GRANT USAGE ON *.* TO `role1`", account{"role1", ""}, false, true},
		{"SET NAMES utf8mb4", account{}, false, false},
	}
	for _, c := range cases {
		a, create, ok, err := statementAccount(c.stmt)
		if err != nil || a != c.acc || create != c.create || ok != c.ok {
			t.Errorf("%q: got %v %v %v %v", c.stmt, a, create, ok, err)
		}
	}
}

func TestRemoveDeferredIndexes(t *testing.T) {
	create := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  `b` text DEFAULT NULL,\n" +
		"  PRIMARY KEY (`id`),\n  KEY `ia` (`a`),\n  UNIQUE KEY `ub` (`a`,`id`),\n  FULLTEXT KEY `fb` (`b`)\n) ENGINE=InnoDB"
	got, err := removeDeferredIndexes(create, []string{"KEY `ia` (`a`)", "FULLTEXT KEY `fb` (`b`)"})
	if err != nil {
		t.Fatal(err)
	}
	want := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  `b` text DEFAULT NULL,\n" +
		"  PRIMARY KEY (`id`),\n  UNIQUE KEY `ub` (`a`,`id`)\n) ENGINE=InnoDB"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	got, err = removeDeferredIndexes(create, []string{"KEY `ia` (`a`)", "UNIQUE KEY `ub` (`a`,`id`)", "FULLTEXT KEY `fb` (`b`)"})
	if err != nil || !strings.Contains(got, "PRIMARY KEY (`id`)\n) ENGINE") {
		t.Fatalf("all removed: %q %v", got, err)
	}
	if _, err := removeDeferredIndexes(create, []string{"KEY `nope` (`a`)"}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown index: %v", err)
	}
	// A column line that merely contains the definition's text stays.
	if _, err := removeDeferredIndexes(create, []string{"`a` int(11)"}); err == nil {
		t.Fatal("a partial line matched")
	}
	if n := indexName("UNIQUE KEY `u``x` (`a`)"); n != "u`x" {
		t.Errorf("indexName = %q", n)
	}
	if !isFulltext("FULLTEXT KEY `fb` (`b`)") || isFulltext("KEY `fulltext` (`b`)") {
		t.Error("isFulltext")
	}
}

func TestRangeWhere(t *testing.T) {
	w, err := rangeWhere([]string{"a", "b"}, &Range{Lower: []string{"1", "'x'"}, Upper: []string{"5", "'y'"}})
	if err != nil || w != "(`a`,`b`) > (1,'x') AND (`a`,`b`) <= (5,'y')" {
		t.Fatalf("%q %v", w, err)
	}
	if w, _ := rangeWhere([]string{"a"}, &Range{Upper: []string{"5"}}); w != "(`a`) <= (5)" {
		t.Fatalf("%q", w)
	}
	if w, _ := rangeWhere([]string{"a"}, &Range{}); w != "" {
		t.Fatalf("%q", w)
	}
	if _, err := rangeWhere([]string{"a"}, &Range{Lower: []string{"1", "2"}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseRename(t *testing.T) {
	from, to, err := ParseRename("shop.orders=shop.orders_restored")
	if err != nil || from != [2]string{"shop", "orders"} || to != [2]string{"shop", "orders_restored"} {
		t.Fatalf("%v %v %v", from, to, err)
	}
	from, to, err = ParseRename("`my.db`.`a=b`=other.`x``y`")
	if err != nil || from != [2]string{"my.db", "a=b"} || to != [2]string{"other", "x`y"} {
		t.Fatalf("%v %v %v", from, to, err)
	}
	for _, bad := range []string{"shop.orders", "orders=x.y", "a.b=c", "a.b=a.b", "a.b=c.d=e.f", "`a.b=c.d", "a.=c.d", "a.b.c=d.e"} {
		if _, _, err := ParseRename(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFilter(t *testing.T) {
	cases := []struct {
		inc, exc      []string
		schema, table string
		want          bool
	}{
		{nil, nil, "shop", "orders", true},
		{[]string{"shop.*"}, nil, "shop", "orders", true},
		{[]string{"shop.*"}, nil, "shopx", "orders", false},
		{[]string{"shop"}, nil, "shop", "orders", true},
		{[]string{"shop.ord?rs"}, nil, "shop", "orders", true},
		{[]string{"*.orders"}, []string{"test.*"}, "test", "orders", false},
		{[]string{"*.orders"}, []string{"test.*"}, "prod", "orders", true},
		{nil, []string{"shop.tmp_*"}, "shop", "tmp_1", false},
		{[]string{"s.*"}, nil, "s", "a/b", true},     // '/' is an ordinary character
		{[]string{"`a.b`.*"}, nil, "a.b", "t", true}, // a quoted dot
		{[]string{"`a*`.t"}, nil, "abc", "t", false}, // quoted: '*' is literal
		{[]string{"`a*`.t"}, nil, "a*", "t", true},
		{[]string{"shop.orders"}, nil, "shop", "orders2", false},
	}
	for _, c := range cases {
		f, err := parseFilter(c.inc, c.exc)
		if err != nil {
			t.Fatalf("%v %v: %v", c.inc, c.exc, err)
		}
		if got := f.match(c.schema, c.table); got != c.want {
			t.Errorf("include %v exclude %v %s.%s = %v, want %v", c.inc, c.exc, c.schema, c.table, got, c.want)
		}
		if got := matchFilter(c.inc, c.exc, c.schema, c.table); got != c.want {
			t.Errorf("matchFilter %v %v %s.%s = %v", c.inc, c.exc, c.schema, c.table, got)
		}
	}
	// One syntax with the dump's (MatchFilter): the first dot splits, the
	// rest of the table part is plain.
	if f, err := parseFilter([]string{"a.b.c"}, nil); err != nil || !f.match("a", "b.c") || f.match("a.b", "c") {
		t.Errorf("a.b.c: %v", err)
	}
	for _, bad := range []string{"shop.[", "`x", ".t"} {
		if _, err := parseFilter([]string{bad}, nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
