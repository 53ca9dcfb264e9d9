package logical

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/testdb"
)

// The load tests build their dumps by hand, in the format the dumper
// writes, and keep a reference copy of every table (schema "ref", filled
// with the same INSERT statements over a plain connection), so a loaded
// table can be compared with CHECKSUM TABLE and SHOW CREATE TABLE.

// memSource is a Source over files in memory. It checks size and sha256 at
// EOF like every Source must. hook, if set, runs before a file is opened
// (it may block or fail); wrap, if set, wraps a file's reader.
type memSource struct {
	files map[string][]byte
	mu    sync.Mutex
	opens []string
	hook  func(ctx context.Context, f *File) error
	wrap  func(ctx context.Context, f *File, r io.Reader) io.Reader
}

func (s *memSource) Open(ctx context.Context, f *File) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opens = append(s.opens, f.Name)
	s.mu.Unlock()
	if s.hook != nil {
		if err := s.hook(ctx, f); err != nil {
			return nil, err
		}
	}
	data, ok := s.files[f.Name]
	if !ok {
		return nil, fmt.Errorf("no file %s", f.Name)
	}
	var r io.Reader = &checkReader{r: bytes.NewReader(data), f: f, h: sha256.New()}
	if s.wrap != nil {
		r = s.wrap(ctx, f, r)
	}
	return io.NopCloser(r), nil
}

type checkReader struct {
	r io.Reader
	f *File
	h hash.Hash
	n int64
}

func (c *checkReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if err == io.EOF && (c.n != c.f.Size || hex.EncodeToString(c.h.Sum(nil)) != c.f.SHA256) {
		return n, fmt.Errorf("%w: %s: sha256 or size mismatch", ErrCorrupt, c.f.Name)
	}
	return n, err
}

// fixture is a hand-made dump.
type fixture struct {
	idx   Index
	files map[string][]byte
	off   int64
}

func newFixture() *fixture {
	return &fixture{idx: Index{Format: FormatVersion}, files: map[string][]byte{}}
}

func (fx *fixture) add(f File, data []byte) *File {
	sum := sha256.Sum256(data)
	f.Size, f.SHA256, f.Offset = int64(len(data)), hex.EncodeToString(sum[:]), fx.off
	fx.off += f.Size
	fx.idx.Files = append(fx.idx.Files, f)
	fx.files[f.Name] = data
	return &fx.idx.Files[len(fx.idx.Files)-1]
}

func (fx *fixture) source() *memSource { return &memSource{files: fx.files} }

// find returns the index entry of a file.
func (fx *fixture) find(name string) *File {
	for i := range fx.idx.Files {
		if fx.idx.Files[i].Name == name {
			return &fx.idx.Files[i]
		}
	}
	return nil
}

func testObjectFile(stmts ...string) []byte {
	var b strings.Builder
	b.WriteString("DELIMITER ;;\n")
	for _, s := range stmts {
		b.WriteString(s + "\n;;\n")
	}
	return []byte(b.String())
}

func (fx *fixture) object(kind Kind, schema, name string, stmts ...string) {
	fx.add(File{Name: EncodeName(schema) + "/" + EncodeName(name) + "." + string(kind) + ".sql", Kind: kind, Schema: schema, Object: name}, testObjectFile(stmts...))
}

// tableSpec is a table of a fixture: its definition and rows (SQL literals,
// in key order).
type tableSpec struct {
	name    string
	ddl     string // CREATE TABLE body after the name, e.g. "(id INT PRIMARY KEY) ENGINE=InnoDB"
	columns []string
	key     []int // indexes of the key columns in columns; nil: no key
	rows    [][]string
	perFile int // rows per data file
	perStmt int // rows per INSERT
	deferIx bool
	engine  string
	// versioned: a MariaDB system-versioned table, its history included.
	versioned bool
}

// dataLines returns the statements of a data file of rows.
func dataLines(table string, cols []string, rows [][]string, perStmt int, versioned ...bool) []byte {
	var b bytes.Buffer
	b.WriteString("/*!40101 SET NAMES binary */;\n")
	if len(versioned) > 0 && versioned[0] {
		b.WriteString("SET @@system_versioning_insert_history=1;\n")
	}
	qc := make([]string, len(cols))
	for i, c := range cols {
		qc[i] = QuoteIdent(c)
	}
	for i := 0; i < len(rows); i += perStmt {
		end := min(i+perStmt, len(rows))
		b.WriteString("INSERT INTO " + QuoteIdent(table) + " (" + strings.Join(qc, ",") + ") VALUES ")
		for j := i; j < end; j++ {
			if j > i {
				b.WriteByte(',')
			}
			b.WriteString("(" + strings.Join(rows[j], ",") + ")")
		}
		b.WriteString(";\n")
	}
	return b.Bytes()
}

// table creates the table in the reference schema ref of db, takes its
// SHOW CREATE TABLE for the dump, fills the reference copy with the data
// files' statements, and adds the table and data files to the dump.
func (fx *fixture) table(t *testing.T, db *sql.DB, schema string, ts tableSpec) {
	t.Helper()
	ctx := context.Background()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustExec(t, c, "CREATE DATABASE IF NOT EXISTS ref DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci") // like the dump's shop
	mustExec(t, c, "USE ref")
	mustExec(t, c, "SET SESSION sql_mode='NO_AUTO_VALUE_ON_ZERO', time_zone='+00:00', foreign_key_checks=0")
	// The dump holds SHOW CREATE TABLE of the table, and the reference is
	// created from that text too: MySQL shows a column's CHARACTER SET
	// only once it was given explicitly, so SHOW CREATE TABLE of a table
	// made from SHOW CREATE TABLE output can differ from the original's.
	mustExec(t, c, "CREATE TABLE "+QuoteIdent(ts.name)+" "+ts.ddl)
	var n, create string
	if err := c.QueryRowContext(ctx, "SHOW CREATE TABLE "+QuoteIdent(ts.name)).Scan(&n, &create); err != nil {
		t.Fatal(err)
	}
	mustExec(t, c, "DROP TABLE "+QuoteIdent(ts.name))
	mustExec(t, c, create)
	meta := &TableMeta{Engine: ts.engine, Columns: ts.columns, Versioned: ts.versioned}
	for _, k := range ts.key {
		meta.PrimaryKey = append(meta.PrimaryKey, ts.columns[k])
	}
	if ts.deferIx {
		for _, l := range strings.Split(create, "\n") {
			l = strings.TrimSuffix(strings.TrimSpace(l), ",")
			if strings.HasPrefix(l, "KEY ") || strings.HasPrefix(l, "UNIQUE KEY ") || strings.HasPrefix(l, "FULLTEXT KEY ") {
				meta.DeferredIndexes = append(meta.DeferredIndexes, l)
			}
		}
		if len(meta.DeferredIndexes) == 0 {
			t.Fatalf("table %s: no index to defer in %s", ts.name, create)
		}
	}
	perStmt := max(ts.perStmt, 1)
	var data []File
	var blobs [][]byte
	for i, part := 0, 0; i < len(ts.rows); i, part = i+ts.perFile, part+1 {
		end := min(i+ts.perFile, len(ts.rows))
		rows := ts.rows[i:end]
		f := File{Name: EncodeName(schema) + "/" + EncodeName(ts.name) + fmt.Sprintf(".%05d.sql", part), Kind: KindData,
			Schema: schema, Object: ts.name, Part: part, Rows: int64(len(rows))}
		if ts.key != nil {
			f.Range = &Range{}
			if i > 0 {
				f.Range.Lower = keyOf(ts.rows[i-1], ts.key)
			}
			if end < len(ts.rows) {
				f.Range.Upper = keyOf(ts.rows[end-1], ts.key)
			}
		}
		b := dataLines(ts.name, ts.columns, rows, perStmt, ts.versioned)
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			mustExec(t, c, l)
		}
		data = append(data, f)
		blobs = append(blobs, b)
	}
	meta.Parts, meta.Rows = len(data), int64(len(ts.rows))
	fx.add(File{Name: EncodeName(schema) + "/" + EncodeName(ts.name) + ".table.sql", Kind: KindTable, Schema: schema, Object: ts.name, Table: meta},
		testObjectFile("/*!40101 SET NAMES utf8mb4 */", create))
	for i := range data {
		fx.add(data[i], blobs[i])
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func keyOf(row []string, key []int) []string {
	var k []string
	for _, i := range key {
		k = append(k, row[i])
	}
	return k
}

func mustExec(t *testing.T, e execer, q string, args ...any) {
	t.Helper()
	if _, err := e.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", abbrev(q), err)
	}
}

// shopTables are the tables of the "shop" fixture.
func shopTables(fl flavor.Name) []tableSpec {
	var orders, nopk, myi, myiNopk, odd, items, ver [][]string
	for i := 0; i < 100; i++ { // id 0 stays 0 (NO_AUTO_VALUE_ON_ZERO)
		note := "NULL"
		switch i % 4 {
		case 1:
			note = sqlString(fmt.Sprintf("it's line %d\nsecond \\ line \x00 \U0001F600 ü", i))
		case 2:
			note = sqlString(fmt.Sprintf("plain note %d", i))
		}
		orders = append(orders, []string{fmt.Sprint(i), sqlString(fmt.Sprintf("cust%d", i%7)), fmt.Sprintf("%d.%02d", i, i%100),
			sqlString(fmt.Sprintf("2024-03-31 %02d:%02d:00", 1+i/60, i%60)), note})
	}
	for i := 0; i < 30; i++ {
		nopk = append(nopk, []string{fmt.Sprint(i % 5), sqlString(fmt.Sprintf("dup%d", i%3)), fmt.Sprint(i % 2)}) // duplicate rows
	}
	for i := 1; i <= 60; i++ {
		myi = append(myi, []string{fmt.Sprint(i * 10), sqlString(fmt.Sprintf("v%d", i%9))})
	}
	for i := 0; i < 40; i++ {
		myiNopk = append(myiNopk, []string{fmt.Sprint(i % 4), sqlString(strings.Repeat("x", i))})
	}
	for i := 1; i <= 20; i++ {
		items = append(items, []string{fmt.Sprint(i), fmt.Sprint(i * 3 % 100), fmt.Sprint(i)})
	}
	for i := 1; i <= 4; i++ {
		ver = append(ver,
			[]string{fmt.Sprint(i), fmt.Sprint(i * 10), "'2024-01-01 00:00:00.000000'", "'2024-02-01 00:00:00.000000'"},
			[]string{fmt.Sprint(i), fmt.Sprint(i*10 + 1), "'2024-02-01 00:00:00.000000'", "'2038-01-19 03:14:07.999999'"})
	}
	for i := 0; i < 5; i++ {
		odd = append(odd, []string{sqlString(fmt.Sprintf("k`%d. é", i)), "0x00FF" + fmt.Sprintf("%02X", i)})
	}
	specs := []tableSpec{
		// items refers to orders and comes first: foreign keys are not
		// checked during a load.
		{name: "items", engine: "InnoDB", ddl: "(id INT NOT NULL PRIMARY KEY, order_id INT NOT NULL, qty INT, KEY fk_order (order_id), " +
			"CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id)) ENGINE=InnoDB",
			columns: []string{"id", "order_id", "qty"}, key: []int{0}, rows: items, perFile: 7, perStmt: 3},
		{name: "orders", engine: "InnoDB", ddl: "(id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(50) NOT NULL, " +
			"amount DECIMAL(10,2) NOT NULL, created TIMESTAMP NULL DEFAULT NULL, note TEXT, " +
			"total DECIMAL(12,2) AS (amount * 2) STORED, cust_upper VARCHAR(50) AS (UPPER(customer)) VIRTUAL, KEY idx_customer (customer), " +
			"UNIQUE KEY uk_cust_created (customer, created), FULLTEXT KEY ft_note (note)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
			columns: []string{"id", "customer", "amount", "created", "note"}, key: []int{0}, rows: orders, perFile: 25, perStmt: 4, deferIx: true},
		{name: "nopk", engine: "InnoDB", ddl: "(a INT, b VARCHAR(20), c INT DEFAULT 5 INVISIBLE) ENGINE=InnoDB", columns: []string{"a", "b", "c"}, rows: nopk, perFile: 10, perStmt: 3},
		{name: "myi", engine: "MyISAM", ddl: "(id INT NOT NULL PRIMARY KEY, v VARCHAR(20), KEY idx_v (v)) ENGINE=MyISAM",
			columns: []string{"id", "v"}, key: []int{0}, rows: myi, perFile: 20, perStmt: 5, deferIx: true},
		{name: "myi_nopk", engine: "MyISAM", ddl: "(a INT, b TEXT) ENGINE=MyISAM", columns: []string{"a", "b"}, rows: myiNopk, perFile: 20, perStmt: 4},
		{name: "odd `name`.x", engine: "InnoDB", ddl: "(`k ``e` VARCHAR(20) NOT NULL PRIMARY KEY, `b.b` VARBINARY(10)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
			columns: []string{"k `e", "b.b"}, key: []int{0}, rows: odd, perFile: 2, perStmt: 1},
		{name: "empty", engine: "InnoDB", ddl: "(id INT NOT NULL PRIMARY KEY, x INT, KEY kx (x)) ENGINE=InnoDB", columns: []string{"id", "x"}, key: []int{0}, perFile: 10, deferIx: true},
	}
	if fl == flavor.MariaDB {
		specs = append(specs, tableSpec{name: "ver", engine: "InnoDB", versioned: true, rows: ver, perFile: 100, perStmt: 3,
			ddl: "(id INT NOT NULL, v INT, row_start TIMESTAMP(6) GENERATED ALWAYS AS ROW START INVISIBLE, " +
				"row_end TIMESTAMP(6) GENERATED ALWAYS AS ROW END INVISIBLE, PERIOD FOR SYSTEM_TIME(row_start, row_end)) ENGINE=InnoDB WITH SYSTEM VERSIONING",
			columns: []string{"id", "v", "row_start", "row_end"}})
	}
	return specs
}

const appHash = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"

// shopFixture builds the "shop" dump: every kind of file. The reference
// copies of its tables go to schema ref of db.
func shopFixture(t *testing.T, db *sql.DB, fl flavor.Name) *fixture {
	fx := newFixture()
	users := []string{"/*!40101 SET NAMES utf8mb4 */",
		"CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '" + appHash + "'",
		"GRANT SELECT, INSERT ON `shop`.* TO `app`@`%`",
		"CREATE USER `existing`@`localhost`",
		"GRANT ALL PRIVILEGES ON *.* TO `existing`@`localhost`"}
	if fl == flavor.MySQL {
		users[1] = "CREATE USER `app`@`%` IDENTIFIED BY 'app-secret'"
	}
	if fl == flavor.MariaDB {
		users = append(users, "CREATE ROLE `reader`", "GRANT SELECT ON `shop`.* TO `reader`", "GRANT `reader` TO `app`@`%`")
	}
	fx.add(File{Name: "@users.sql", Kind: KindUsers}, testObjectFile(users...))
	fx.object(KindDatabase, "shop", "", "/*!40101 SET NAMES utf8mb4 */",
		"CREATE DATABASE `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci */")
	for _, ts := range shopTables(fl) {
		fx.table(t, db, "shop", ts)
	}
	if fl == flavor.MariaDB {
		fx.object(KindSequence, "shop", "seq1", "/*!40101 SET NAMES utf8mb4 */",
			"CREATE SEQUENCE `seq1` start with 1 minvalue 1 maxvalue 1000 increment by 1 cache 10 nocycle ENGINE=InnoDB",
			"SELECT SETVAL(`seq1`, 42, 1)")
	}
	ctx := "/*!40101 SET NAMES utf8mb4 */"
	// v_top (over v_orders) comes first: the loader must retry it.
	fx.object(KindView, "shop", "v_top", ctx, "SET SESSION character_set_client = utf8mb4",
		"CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v_top` AS select `v_orders`.`id` AS `id` from `v_orders` where `v_orders`.`amount` > 50")
	fx.object(KindView, "shop", "v_orders", ctx,
		"CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v_orders` AS select `orders`.`id` AS `id`,`orders`.`amount` AS `amount` from `orders`")
	fx.object(KindRoutine, "shop", "p_count", ctx, "SET SESSION sql_mode = 'STRICT_TRANS_TABLES'",
		"CREATE DEFINER=`root`@`localhost` PROCEDURE `p_count`(OUT n INT)\nBEGIN\n  -- a body with ; inside\n  SELECT COUNT(*) INTO n FROM orders;\nEND")
	fx.object(KindRoutine, "shop", "f_double", ctx,
		"CREATE DEFINER=`root`@`localhost` FUNCTION `f_double`(x INT) RETURNS int\n    DETERMINISTIC\nRETURN x * 2")
	// If this trigger fired during the load, orders' notes (and checksum)
	// would differ from the reference.
	fx.object(KindTrigger, "shop", "trg_orders", ctx,
		"CREATE DEFINER=`root`@`localhost` TRIGGER `trg_orders` BEFORE INSERT ON `orders` FOR EACH ROW SET NEW.note = CONCAT('trg:', IFNULL(NEW.note, ''))")
	fx.object(KindEvent, "shop", "ev_clean", ctx, "SET SESSION time_zone = '+00:00'",
		"CREATE DEFINER=`root`@`localhost` EVENT `ev_clean` ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE DO DELETE FROM orders WHERE id < 0")
	fx.add(File{Name: "@grants.sql", Kind: kindGrants}, testObjectFile("/*!40101 SET NAMES utf8mb4 */",
		"GRANT SELECT (`id`) ON `shop`.`orders` TO `app`@`%`",
		"GRANT EXECUTE ON PROCEDURE `shop`.`p_count` TO `app`@`%`",
		"GRANT SELECT ON `shop`.`myi` TO `existing`@`localhost`"))
	return fx
}

// checksums returns CHECKSUM TABLE and COUNT(*) of a table.
func checksum(t *testing.T, db *sql.DB, schema, table string) (sum sql.NullInt64, n int64) {
	t.Helper()
	var name string
	if err := db.QueryRow("CHECKSUM TABLE "+QuoteName(schema, table)).Scan(&name, &sum); err != nil {
		t.Fatalf("checksum %s.%s: %v", schema, table, err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM " + QuoteName(schema, table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return sum, n
}

func testShowCreate(t *testing.T, db *sql.DB, schema, table string) string {
	t.Helper()
	var n, c string
	if err := db.QueryRow("SHOW CREATE TABLE "+QuoteName(schema, table)).Scan(&n, &c); err != nil {
		t.Fatalf("show create %s.%s: %v", schema, table, err)
	}
	return c
}

// sameAsRef checks that schema.table has the rows and definition of the
// reference copy ref.refTable.
func sameAsRef(t *testing.T, db *sql.DB, schema, table, refTable string) {
	t.Helper()
	ws, wn := checksum(t, db, "ref", refTable)
	gs, gn := checksum(t, db, schema, table)
	if gs != ws || gn != wn {
		t.Errorf("%s.%s: checksum %v rows %d, reference %v rows %d", schema, table, gs, gn, ws, wn)
	}
	if g, w := testShowCreate(t, db, schema, table), testShowCreate(t, db, "ref", refTable); strings.Replace(g, QuoteIdent(table), QuoteIdent(refTable), 1) != w {
		t.Errorf("%s.%s: SHOW CREATE TABLE\n%s\nreference\n%s", schema, table, g, w)
	}
}

func startServer(t *testing.T, fl flavor.Name, extra ...string) (*testdb.Server, *sql.DB) {
	t.Helper()
	if fl == flavor.MySQL {
		testdb.RequireMySQL(t)
	}
	srv := testdb.ForTest(t, testdb.Options{Flavor: fl, ExtraArgs: extra})
	db, err := srv.DB("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return srv, db
}

func schemaExists(t *testing.T, db *sql.DB, s string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", s).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func withTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
