package logical

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
)

func gtidPos(t *testing.T, db *sql.DB, fl flavor.Name) string {
	t.Helper()
	q := "SELECT @@gtid_binlog_pos"
	if fl == flavor.MySQL {
		q = "SELECT @@gtid_executed"
	}
	var s string
	if err := db.QueryRow(q).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func tablesOf(t *testing.T, db *sql.DB, schema string) []string {
	t.Helper()
	rows, err := db.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", schema)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func indexesOf(t *testing.T, db *sql.DB, schema, table string) []string {
	t.Helper()
	rows, err := db.Query("SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME", schema, table)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func scalar[T any](t *testing.T, db *sql.DB, q string, args ...any) T {
	t.Helper()
	var v T
	if err := db.QueryRow(q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

// TestLoadRoundTrip loads a dump with every kind of file and compares each
// table with its reference copy (rows, checksum, SHOW CREATE TABLE with the
// deferred indexes back), and each object by using it.
func TestLoadRoundTrip(t *testing.T) {
	for _, fl := range []flavor.Name{flavor.MariaDB, flavor.MySQL} {
		t.Run(string(fl), func(t *testing.T) {
			// A server time zone that is not UTC: TIMESTAMP values must be
			// read as UTC all the same.
			_, db := startServer(t, fl, "--default-time-zone=+05:00")
			ctx := withTimeout(t)
			fx := shopFixture(t, db, fl)
			mustExec(t, db, "CREATE USER `existing`@`localhost`")
			before := gtidPos(t, db, fl)

			src := fx.source()
			var checked bool
			src.hook = func(ctx context.Context, f *File) error {
				if f.Name == "shop/orders.00002.sql" {
					// orders' data is loading: its deferred indexes must
					// not be there yet.
					checked = true
					if ix := indexesOf(t, db, "shop", "orders"); strings.Join(ix, ",") != "PRIMARY" {
						t.Errorf("while orders loads, its indexes are %v, want only PRIMARY", ix)
					}
				}
				return nil
			}
			var progMu sync.Mutex
			var last LoadProgress
			calls := 0
			res, err := Load(ctx, db, &fx.idx, src, LoadOptions{Parallelism: 2, Users: true, DeferIndexes: true, LoadID: "roundtrip",
				Progress: func(p LoadProgress) { progMu.Lock(); last = p; calls++; progMu.Unlock() }})
			if err != nil {
				t.Fatal(err)
			}
			if after := gtidPos(t, db, fl); after != before {
				t.Errorf("the load was binlogged: GTID %q -> %q", before, after)
			}
			if !checked {
				t.Error("the deferred-index check did not run")
			}
			for _, ts := range shopTables(fl) {
				sameAsRef(t, db, "shop", ts.name, ts.name)
			}
			if ix := indexesOf(t, db, "shop", "orders"); strings.Join(ix, ",") != "PRIMARY,ft_note,idx_customer,uk_cust_created" {
				t.Errorf("orders' indexes after the load: %v", ix)
			}
			var rows int64
			dataFiles := 0
			for _, ts := range shopTables(fl) {
				rows += int64(len(ts.rows))
				dataFiles += (len(ts.rows) + ts.perFile - 1) / ts.perFile
			}
			if res.Rows != rows || res.SkippedFiles != 0 || res.Tables != len(shopTables(fl)) || res.IndexTime <= 0 || res.LoadID != "roundtrip" {
				t.Errorf("result %+v, want %d rows, %d tables", res, rows, len(shopTables(fl)))
			}
			if last.Phase != "done" || last.FilesDone != dataFiles || last.RowsDone != rows || last.FilesTotal != dataFiles || calls < dataFiles {
				t.Errorf("last progress %+v after %d calls", last, calls)
			}
			if fl == flavor.MariaDB {
				q := "SELECT COUNT(*) FROM %s.ver FOR SYSTEM_TIME ALL WHERE row_end < '2030-01-01'"
				if g, w := scalar[int](t, db, fmt.Sprintf(q, "shop")), scalar[int](t, db, fmt.Sprintf(q, "ref")); g != w || g != 4 {
					t.Errorf("history rows of ver: %d, reference %d", g, w)
				}
			}
			if g, w := scalar[string](t, db, "SELECT SUM(total) FROM shop.orders WHERE cust_upper = 'CUST3'"),
				scalar[string](t, db, "SELECT SUM(total) FROM ref.orders WHERE cust_upper = 'CUST3'"); g != w {
				t.Errorf("generated columns: %s, reference %s", g, w)
			}
			// TIMESTAMP exactness under a +05:00 server zone.
			want := time.Date(2024, 3, 31, 1, 0, 0, 0, time.UTC).Unix()
			if got := scalar[int64](t, db, "SELECT UNIX_TIMESTAMP(created) FROM shop.orders WHERE id = 0"); got != want {
				t.Errorf("orders 0 created = %d, want %d", got, want)
			}
			if got := scalar[string](t, db, "SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'"); got != "utf8mb4_unicode_ci" {
				t.Errorf("shop's collation %s", got)
			}
			// Views (v_top needed a second round), routines, trigger, event.
			if got, want := scalar[int](t, db, "SELECT COUNT(*) FROM shop.v_top"), scalar[int](t, db, "SELECT COUNT(*) FROM ref.orders WHERE amount > 50"); got != want || got == 0 {
				t.Errorf("v_top has %d rows, want %d", got, want)
			}
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mustExec(t, c, "CALL shop.p_count(@n)")
			var n int
			if err := c.QueryRowContext(ctx, "SELECT @n").Scan(&n); err != nil || n != 100 {
				t.Errorf("p_count = %d, %v", n, err)
			}
			c.Close()
			if got := scalar[int](t, db, "SELECT shop.f_double(21)"); got != 42 {
				t.Errorf("f_double(21) = %d", got)
			}
			mustExec(t, db, "INSERT INTO shop.orders (customer, amount) VALUES ('new', 1)")
			if got := scalar[string](t, db, "SELECT note FROM shop.orders WHERE customer = 'new'"); got != "trg:" {
				t.Errorf("the trigger did not fire after the load: note %q", got)
			}
			if got := scalar[string](t, db, "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop' AND EVENT_NAME = 'ev_clean'"); got != "DISABLED" {
				t.Errorf("event status %q", got)
			}
			if fl == flavor.MariaDB {
				if got := scalar[int](t, db, "SELECT NEXTVAL(shop.seq1)"); got != 43 {
					t.Errorf("seq1 next value %d, want 43", got)
				}
			}
			// Accounts: app created with its grant, existing left alone.
			grants := strings.Join(showGrants(t, db, "'app'@'%'"), "\n")
			if !strings.Contains(grants, "GRANT SELECT, INSERT ON `shop`.* TO `app`@`%`") {
				t.Errorf("app's grants: %s", grants)
			}
			for _, want := range []string{"GRANT SELECT (`id`) ON `shop`.`orders` TO `app`@`%`", "GRANT EXECUTE ON PROCEDURE `shop`.`p_count` TO `app`@`%`"} {
				if !strings.Contains(grants, want) {
					t.Errorf("app's grants lack %s: %s", want, grants)
				}
			}
			if fl == flavor.MariaDB && !strings.Contains(grants, "GRANT `reader` TO `app`@`%`") {
				t.Errorf("app's grants lack the role: %s", grants)
			}
			if g := strings.Join(showGrants(t, db, "'existing'@'localhost'"), "\n"); strings.Contains(g, "ALL PRIVILEGES") || strings.Contains(g, "myi") {
				t.Errorf("an existing account was changed: %s", g)
			}
			if !strings.Contains(strings.Join(res.Notes, "\n"), "'existing'@'localhost' exists in the target") {
				t.Errorf("notes do not report the existing account: %q", res.Notes)
			}
			// With Binlog (MySQL's GTID consistency: MyISAM rows are not
			// written in a transaction with the InnoDB progress mark).
			before = gtidPos(t, db, fl)
			if _, err := Load(ctx, db, &fx.idx, fx.source(), LoadOptions{Include: []string{"shop.myi*"}, Binlog: true,
				Rename: map[string]string{"shop.myi": "shop.myi_b", "shop.myi_nopk": "shop.myi_nopk_b"}}); err != nil {
				t.Fatal(err)
			}
			sameAsRef(t, db, "shop", "myi_b", "myi")
			sameAsRef(t, db, "shop", "myi_nopk_b", "myi_nopk")
			if after := gtidPos(t, db, fl); after == before {
				t.Error("Binlog: true, but the GTID position did not move")
			}
			// The progress record is gone.
			if schemaExists(t, db, ProgressSchema) {
				t.Errorf("%s is left after a finished load", ProgressSchema)
			}
		})
	}
}

func showGrants(t *testing.T, db *sql.DB, acct string) []string {
	t.Helper()
	rows, err := db.Query("SHOW GRANTS FOR " + acct)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var g string
		_ = rows.Scan(&g)
		out = append(out, g)
	}
	return out
}

// TestLoadFilterRename loads parts of a dump, renamed within and across
// schemas, and refuses renames that name nothing.
func TestLoadFilterRename(t *testing.T) {
	_, db := startServer(t, flavor.MariaDB)
	ctx := withTimeout(t)
	fx := shopFixture(t, db, flavor.MariaDB)
	fx.object(KindTable, ProgressSchema, "progress", "CREATE TABLE `progress` (x int)") // never loaded

	before := gtidPos(t, db, flavor.MariaDB)
	res, err := Load(ctx, db, &fx.idx, fx.source(), LoadOptions{
		Include:      []string{"shop.orders", "shop.nop?"},
		Rename:       map[string]string{"shop.orders": "shop2.orders_restored", "shop.nopk": "shop.`nopk r`"},
		Binlog:       true,
		DeferIndexes: true,
		Users:        true,
	})
	if err != nil {
		t.Fatal(err)
	}
	sameAsRef(t, db, "shop2", "orders_restored", "orders")
	sameAsRef(t, db, "shop", "nopk r", "nopk")
	if got := tablesOf(t, db, "shop"); strings.Join(got, ",") != "nopk r" {
		t.Errorf("shop has %v, want only the renamed nopk", got)
	}
	if got := tablesOf(t, db, "shop2"); strings.Join(got, ",") != "orders_restored" {
		t.Errorf("shop2 has %v", got)
	}
	if got := scalar[string](t, db, "SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop2'"); got != "utf8mb4_unicode_ci" {
		t.Errorf("shop2 (a rename target) has collation %s, want the one of shop", got)
	}
	if n := scalar[int](t, db, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN ('shop','shop2')"); n != 0 {
		t.Errorf("%d triggers loaded for a renamed table", n)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, want := range []string{"trigger `shop`.`trg_orders`", "not applied (its object is not loaded): GRANT EXECUTE ON PROCEDURE", ProgressSchema} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", res.Notes, want)
		}
	}
	if after := gtidPos(t, db, flavor.MariaDB); after == before {
		t.Error("Binlog: true, but the GTID position did not move")
	}
	if got := tablesOf(t, db, ProgressSchema); len(got) != 0 {
		t.Errorf("%s holds %v", ProgressSchema, got)
	}

	// Exclude: everything of shop but the MyISAM tables; the views come
	// along and are not rewritten (no rename here, so no note).
	res, err = Load(ctx, db, &fx.idx, fx.source(), LoadOptions{Exclude: []string{"shop.my*"}, DeferIndexes: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "accounts and grants not loaded") {
		t.Errorf("notes %q do not say that accounts were not loaded", res.Notes)
	}
	if got := strings.Join(tablesOf(t, db, "shop"), ","); got != "empty,items,nopk,nopk r,odd `name`.x,orders,seq1,ver,v_orders,v_top" {
		t.Errorf("shop has %s", got)
	}
	sameAsRef(t, db, "shop", "orders", "orders")
	if n := scalar[int](t, db, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'"); n != 1 {
		t.Errorf("%d triggers", n)
	}
	if strings.Contains(strings.Join(res.Notes, "\n"), "views are loaded as they were dumped") {
		t.Errorf("a view note without a rename: %q", res.Notes)
	}

	for _, opt := range []LoadOptions{
		{Rename: map[string]string{"shop.nothere": "shop.x"}},
		{Include: []string{"shop.orders"}, Rename: map[string]string{"shop.nopk": "shop.x"}},
		{Rename: map[string]string{"shop.orders": "shop.x", "shop.nopk": "shop.x"}},
		{Rename: map[string]string{"shop.orders": "shop.nopk"}},
		{Include: []string{"shop.[a"}},
	} {
		_, err := Load(ctx, db, &fx.idx, fx.source(), opt)
		if err == nil {
			t.Errorf("%+v: no error", opt)
		}
	}
	if got := strings.Join(tablesOf(t, db, "shop"), ","); got != "empty,items,nopk,nopk r,odd `name`.x,orders,seq1,ver,v_orders,v_top" {
		t.Errorf("a refused load changed shop: %s", got)
	}
}

// TestLoadRefusesExisting: without Replace, a load that would overwrite
// objects names them and changes nothing; with Replace it replaces them.
func TestLoadRefusesExisting(t *testing.T) {
	_, db := startServer(t, flavor.MariaDB)
	ctx := withTimeout(t)
	fx := shopFixture(t, db, flavor.MariaDB)
	mustExec(t, db, "CREATE DATABASE shop")
	mustExec(t, db, "CREATE TABLE shop.orders (id INT)")
	mustExec(t, db, "INSERT INTO shop.orders VALUES (7)")
	mustExec(t, db, "CREATE VIEW shop.v_orders AS SELECT 1 AS one")
	_, err := Load(ctx, db, &fx.idx, fx.source(), LoadOptions{Users: true, DeferIndexes: true})
	var ee *ExistsError
	if !errors.As(err, &ee) || len(ee.Objects) != 2 || !strings.Contains(err.Error(), "table `shop`.`orders`") || !strings.Contains(err.Error(), "view `shop`.`v_orders`") {
		t.Fatalf("err = %v, want an ExistsError naming shop.orders and shop.v_orders", err)
	}
	if got := strings.Join(tablesOf(t, db, "shop"), ","); got != "orders,v_orders" {
		t.Errorf("a refused load changed shop: %s", got)
	}
	if n := scalar[int](t, db, "SELECT COUNT(*) FROM mysql.user WHERE User = 'app'"); n != 0 {
		t.Error("a refused load created accounts")
	}
	if schemaExists(t, db, ProgressSchema) {
		t.Error("a refused load left its progress schema")
	}
	if _, err := Load(ctx, db, &fx.idx, fx.source(), LoadOptions{Replace: true, DeferIndexes: true}); err != nil {
		t.Fatal(err)
	}
	for _, ts := range shopTables(flavor.MariaDB) {
		sameAsRef(t, db, "shop", ts.name, ts.name)
	}
	if got := scalar[int](t, db, "SELECT COUNT(*) FROM shop.v_orders"); got != 100 {
		t.Errorf("v_orders has %d rows", got)
	}
}

// blockingReader passes the first half of a file, then signals and blocks
// until its context ends, like a connection that dies mid-file.
type blockingReader struct {
	ctx     context.Context
	r       io.Reader
	half    int
	n       int
	blocked chan<- string
	name    string
	once    sync.Once
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if b.n >= b.half {
		b.once.Do(func() { b.blocked <- b.name })
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	if len(p) > b.half-b.n {
		p = p[:b.half-b.n]
	}
	n, err := b.r.Read(p)
	b.n += n
	return n, err
}

// TestLoadResume kills loads in the middle of a data file (the connection
// goes away with the context, as with kill -9 of the agent) and runs them
// again with the same LoadID: every table ends exactly like its reference,
// with no row twice, for InnoDB and MyISAM, with and without a key.
func TestLoadResume(t *testing.T) {
	_, db := startServer(t, flavor.MariaDB)
	fx := shopFixture(t, db, flavor.MariaDB)
	cases := []struct {
		file    string
		partial string // rows of the killed file visible in the target while it loads (non-transactional)
		fail    bool   // the Source fails to open the file instead
		drop    string // a table dropped between the attempts
	}{
		{file: "shop/myi.00001.sql", partial: "SELECT COUNT(*) FROM shop.myi WHERE id > 200 AND id <= 400"},
		{file: "shop/myi_nopk.00001.sql", partial: "SELECT COUNT(*) FROM shop.myi_nopk WHERE LENGTH(b) >= 20"},
		{file: "shop/orders.00002.sql"},
		{file: "shop/nopk.00001.sql"},
		{file: "shop/myi.00002.sql", fail: true},
		// Marks of a table that is gone do not count: it is loaded again.
		{file: "shop/myi.00002.sql", fail: true, drop: "shop.orders"},
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(c.file, "shop/"), ".sql")+c.drop, func(t *testing.T) {
			mustExec(t, db, "DROP DATABASE IF EXISTS shop")
			mustExec(t, db, "DROP DATABASE IF EXISTS "+ProgressSchema)
			ctx := withTimeout(t)
			kctx, kill := context.WithCancel(ctx)
			defer kill()
			blocked := make(chan string, 1)
			src := fx.source()
			if c.fail {
				src.hook = func(_ context.Context, f *File) error {
					if f.Name == c.file {
						return fmt.Errorf("storage is gone")
					}
					return nil
				}
			} else {
				src.wrap = func(_ context.Context, f *File, r io.Reader) io.Reader {
					if f.Name != c.file {
						return r
					}
					return &blockingReader{ctx: kctx, r: r, half: int(f.Size / 2), blocked: blocked, name: f.Name}
				}
			}
			errc := make(chan error, 1)
			go func() {
				_, err := Load(kctx, db, &fx.idx, src, LoadOptions{Parallelism: 2, DeferIndexes: true, LoadID: "resume"})
				errc <- err
			}()
			if !c.fail {
				select {
				case <-blocked:
				case err := <-errc:
					t.Fatalf("load ended before the kill: %v", err)
				case <-time.After(time.Minute):
					t.Fatal("the load never reached the file")
				}
				if c.partial != "" {
					if n := scalar[int](t, db, c.partial); n == 0 {
						t.Fatalf("no partial rows visible while %s loads: the test kills too early", c.file)
					}
				}
				time.Sleep(50 * time.Millisecond) // let the other connection get into a file too
				kill()
			}
			err := <-errc
			if err == nil {
				t.Fatal("the killed load succeeded")
			}
			if c.fail && !strings.Contains(err.Error(), "storage is gone") {
				t.Fatalf("err = %v", err)
			}
			if !schemaExists(t, db, ProgressSchema) {
				t.Fatal("no progress record after a failed load")
			}
			if c.drop != "" {
				if n := scalar[int](t, db, "SELECT COUNT(*) FROM "+c.drop); n == 0 {
					t.Fatalf("%s was empty before the drop: the case tests nothing", c.drop)
				}
				dc, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				mustExec(t, dc, "SET SESSION foreign_key_checks = 0")
				mustExec(t, dc, "DROP TABLE "+c.drop)
				dc.Close()
			}
			res, err := Load(ctx, db, &fx.idx, fx.source(), LoadOptions{Parallelism: 2, DeferIndexes: true, LoadID: "resume"})
			if err != nil {
				t.Fatal(err)
			}
			for _, ts := range shopTables(flavor.MariaDB) {
				sameAsRef(t, db, "shop", ts.name, ts.name)
			}
			if res.SkippedFiles == 0 {
				t.Errorf("the resumed load skipped no file: %+v", res)
			}
			if schemaExists(t, db, ProgressSchema) {
				t.Error("progress schema left after the resumed load finished")
			}
			if n := scalar[int](t, db, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'"); n != 1 {
				t.Errorf("%d triggers", n)
			}
		})
	}
}

// TestLoadCorrupt: a file that fails its checksum at EOF, has a foreign
// line or a wrong row count leaves nothing of itself behind and names
// itself; a statement over max_allowed_packet is a clear error.
func TestLoadCorrupt(t *testing.T) {
	srv, db := startServer(t, flavor.MariaDB)
	fx := shopFixture(t, db, flavor.MariaDB)
	setFile := func(fx *fixture, name string, data []byte) {
		f := fx.find(name)
		fx.files[name] = data
		sum := sha256Hex(data)
		f.Size, f.SHA256 = int64(len(data)), sum
	}
	cases := []struct {
		name   string
		file   string
		spoil  func(fx *fixture, f *File)
		rangeQ string // rows of the file's range: must be none after the failure
		want   string
	}{
		{"sha-innodb", "shop/orders.00001.sql", func(_ *fixture, f *File) { f.SHA256 = strings.Repeat("0", 64) },
			"SELECT COUNT(*) FROM shop.orders WHERE id > 24 AND id <= 49", "sha256"},
		{"sha-myisam", "shop/myi.00001.sql", func(_ *fixture, f *File) { f.SHA256 = strings.Repeat("0", 64) },
			"SELECT COUNT(*) FROM shop.myi WHERE id > 200 AND id <= 400", "sha256"},
		{"sha-myisam-nokey", "shop/myi_nopk.00001.sql", func(_ *fixture, f *File) { f.SHA256 = strings.Repeat("0", 64) },
			"SELECT COUNT(*) FROM shop.myi_nopk WHERE LENGTH(b) >= 20", "sha256"},
		{"foreign-line", "shop/orders.00001.sql", func(fx *fixture, f *File) {
			setFile(fx, f.Name, append(append([]byte(nil), fx.files[f.Name]...), "DROP TABLE `orders`;\n"...))
		}, "SELECT COUNT(*) FROM shop.orders WHERE id > 24 AND id <= 49", "line 9 is neither"},
		{"row-count", "shop/orders.00001.sql", func(_ *fixture, f *File) { f.Rows++ },
			"SELECT COUNT(*) FROM shop.orders WHERE id > 24 AND id <= 49", "inserted 25 rows, its index entry says 26"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mustExec(t, db, "DROP DATABASE IF EXISTS shop")
			mustExec(t, db, "DROP DATABASE IF EXISTS "+ProgressSchema)
			ctx := withTimeout(t)
			bad := shopFixtureCopy(fx)
			c.spoil(bad, bad.find(c.file))
			_, err := Load(ctx, db, &bad.idx, bad.source(), LoadOptions{Parallelism: 2, DeferIndexes: true, LoadID: "corrupt"})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrCorrupt naming %s and %q", err, c.file, c.want)
			}
			if n := scalar[int](t, db, c.rangeQ); n != 0 {
				t.Errorf("%d rows of the failed file are left", n)
			}
			// The good dump, resumed with the same id, completes exactly.
			if _, err := Load(ctx, db, &fx.idx, fx.source(), LoadOptions{Parallelism: 2, DeferIndexes: true, LoadID: "corrupt"}); err != nil {
				t.Fatal(err)
			}
			for _, ts := range shopTables(flavor.MariaDB) {
				sameAsRef(t, db, "shop", ts.name, ts.name)
			}
		})
	}

	t.Run("max_allowed_packet", func(t *testing.T) {
		mustExec(t, db, "DROP DATABASE IF EXISTS shop")
		mustExec(t, db, "SET GLOBAL max_allowed_packet = 16384")
		small, err := srv.DB("")
		if err != nil {
			t.Fatal(err)
		}
		defer small.Close()
		big := newFixture()
		big.object(KindDatabase, "shop", "", "CREATE DATABASE `shop`")
		big.add(File{Name: "shop/big.table.sql", Kind: KindTable, Schema: "shop", Object: "big",
			Table: &TableMeta{Engine: "InnoDB", Columns: []string{"b"}, Parts: 1, Rows: 1}}, testObjectFile("CREATE TABLE `big` (\n  `b` longtext\n)"))
		big.add(File{Name: "shop/big.00000.sql", Kind: KindData, Schema: "shop", Object: "big", Rows: 1},
			dataLines("big", []string{"b"}, [][]string{{sqlString(strings.Repeat("z", 20000))}}, 1))
		_, err = Load(withTimeout(t), small, &big.idx, big.source(), LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), "shop/big.00000.sql") || !strings.Contains(err.Error(), "raise max_allowed_packet on the target") {
			t.Fatalf("err = %v, want a max_allowed_packet error naming the file", err)
		}
	})
}

// shopFixtureCopy copies a fixture's index and file map (the bytes are
// shared), so a test can spoil a copy.
func shopFixtureCopy(fx *fixture) *fixture {
	cp := &fixture{idx: Index{Format: fx.idx.Format, Files: append([]File(nil), fx.idx.Files...)}, files: map[string][]byte{}, off: fx.off}
	for k, v := range fx.files {
		cp.files[k] = v
	}
	return cp
}
