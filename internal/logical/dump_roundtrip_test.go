package logical_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
	"github.com/strata-backup/strata/internal/testdb"
)

const oddSchema = "we`ird sch.ema %"
const oddTable = "tab le.`x` таблица"

// fixture creates every kind of object and column type the dump must
// carry, on either flavor.
func fixture(t *testing.T, pool *sql.DB, fl flavor.Name) {
	t.Helper()
	db, err := pool.Conn(context.Background())
	require.NoError(t, err)
	defer db.Close()
	var all []byte
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	allHex := "0x" + hex.EncodeToString(all)
	jsonType := "JSON"
	execAll(t, db,
		"SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
		"SET SESSION time_zone = '+05:30'",
		"CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
		"CREATE TABLE shop.types ("+
			"id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, bi BIGINT UNSIGNED, "+
			"sb BIGINT, dc DECIMAL(30,10), f FLOAT, d DOUBLE, bt BIT(13), c CHAR(10), vc VARCHAR(200), tx TEXT, "+
			"lt LONGTEXT CHARACTER SET latin1, bn BINARY(4), vb VARBINARY(300), bl BLOB, lb LONGBLOB, "+
			"e ENUM('a','b','c d'), st SET('x','y','z'), dt DATE, dtt DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, "+
			"tm TIME(2), yr YEAR, js "+jsonType+", g GEOMETRY, "+
			"gv INT AS (ti + 1) VIRTUAL, gs VARCHAR(210) AS (CONCAT(vc, '!')) STORED, inv INT INVISIBLE, "+
			"KEY by_vc (vc), FULLTEXT KEY ft (tx)) ENGINE=InnoDB",
		"INSERT INTO shop.types (id, ti, si, mi, bi, sb, dc, f, d, bt, c, vc, tx, lt, bn, vb, bl, lb, e, st, dt, dtt, ts, tm, yr, js, g, inv) VALUES "+
			"(0, -128, 65535, -8388608, 18446744073709551615, -9223372036854775808, -12345678901234567890.0123456789, "+
			"3.14159, 1.7976931348623157e308, b'1010101010101', 'ab', 'emoji 😀𝄞 ünï 中文', 'a''b\\\\c\\nd\\re\\0f\\Zg', "+
			"_latin1 0xe9e8, 0x00ff10ab, "+allHex+", "+allHex+", '', 'c d', 'x,z', '1000-01-01', '9999-12-31 23:59:59.999999', "+
			"'2024-03-31 01:30:00.123', '-838:59:59.00', 2155, '{\"k\": [1, \"ü\", null]}', ST_GeomFromText('POINT(1 2)', 4326), 7),"+
			"(NULL, 0, 0, 0, 0, 0, 0, 1e-38, -0.0, b'0', '', '', '', '', '', '', '', NULL, 'a', '', '0000-00-00', "+
			"'0000-00-00 00:00:00', '1970-01-01 05:30:01.000', '00:00:00', 0, 'null', ST_GeomFromText('LINESTRING(0 0,1 1,2 1)'), NULL),"+
			"(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "+
			"NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
		// No primary key, duplicates.
		"CREATE TABLE shop.nokey (a INT, b VARCHAR(10)) ENGINE=InnoDB",
		"INSERT INTO shop.nokey VALUES (1,'x'),(1,'x'),(2,NULL),(NULL,NULL)",
		// Not in the InnoDB snapshot: dumped under the lock.
		"CREATE TABLE shop.mylog (id INT PRIMARY KEY, msg VARCHAR(20)) ENGINE=MyISAM",
		"INSERT INTO shop.mylog VALUES (1,'one'),(2,'two')",
		// A MERGE table has no rows of its own: its data is its parts'.
		// Dumping it too would load m1's rows twice (INSERT_METHOD=LAST).
		"CREATE TABLE shop.m1 (id INT NOT NULL, KEY (id)) ENGINE=MyISAM",
		"INSERT INTO shop.m1 VALUES (1),(2),(3)",
		"CREATE TABLE shop.mrg (id INT NOT NULL, KEY (id)) ENGINE=MRG_MyISAM UNION=(shop.m1) INSERT_METHOD=LAST",
		// A spatial index.
		"CREATE TABLE shop.geo (id INT PRIMARY KEY, p POINT NOT NULL, SPATIAL KEY sp (p)) ENGINE=InnoDB",
		"INSERT INTO shop.geo VALUES (1, ST_GeomFromText('POINT(3 4)')), (2, ST_GeomFromText('POINT(-1.5 1e10)'))",
		// Foreign keys: no deferred indexes on either side.
		"CREATE TABLE shop.parent (id INT PRIMARY KEY, name VARCHAR(20), KEY by_name (name)) ENGINE=InnoDB",
		"CREATE TABLE shop.child (id INT PRIMARY KEY, pid INT, KEY by_pid (pid), "+
			"CONSTRAINT fk_p FOREIGN KEY (pid) REFERENCES shop.parent (id)) ENGINE=InnoDB",
		"INSERT INTO shop.parent VALUES (1,'p1'),(2,'p2')",
		"INSERT INTO shop.child VALUES (10,1),(11,2),(12,NULL)",
		// Composite and character keys, case-insensitive collation.
		"CREATE TABLE shop.ckey (a VARCHAR(20) NOT NULL, b INT NOT NULL, v INT, PRIMARY KEY (a, b)) ENGINE=InnoDB",
		"INSERT INTO shop.ckey VALUES ('a',1,1),('B',1,2),('b ',2,3),('ä',2,4),('Z',9,5),('😀',1,6)",
		// Odd identifiers everywhere.
		"CREATE DATABASE `"+strings.ReplaceAll(oddSchema, "`", "``")+"`",
		"CREATE TABLE "+logical.QuoteName(oddSchema, oddTable)+" (`sel ect` INT PRIMARY KEY, `order` VARCHAR(5), "+
			"`ключ` INT, `%` TEXT, `a``b` INT) ENGINE=InnoDB",
		"INSERT INTO "+logical.QuoteName(oddSchema, oddTable)+" VALUES (1,'x',2,'%_\\\\',3),(2,NULL,NULL,NULL,NULL)",
		"CREATE TABLE "+logical.QuoteName(oddSchema, "select")+" (`from` INT NOT NULL, UNIQUE KEY `where` (`from`)) ENGINE=InnoDB",
		"INSERT INTO "+logical.QuoteName(oddSchema, "select")+" VALUES (5),(6)",
		"CREATE VIEW "+logical.QuoteName(oddSchema, "v`iew")+" AS SELECT `sel ect` AS `s e` FROM "+logical.QuoteName(oddSchema, oddTable),
		// Views over views.
		"CREATE VIEW shop.v1 AS SELECT id, vc FROM shop.types WHERE id > 0",
		"CREATE VIEW shop.a_v2 AS SELECT COUNT(*) AS n FROM shop.v1",
		"CREATE VIEW shop.a_v3 AS SELECT n FROM shop.a_v2",
		// Routines, triggers (two on one event: their order matters), events.
		"CREATE PROCEDURE shop.p_count(OUT n INT) BEGIN SELECT COUNT(*) INTO n FROM shop.types; END",
		"CREATE FUNCTION shop.f_add(a INT, b INT) RETURNS INT DETERMINISTIC RETURN a + b + LENGTH('ü')",
		"CREATE TABLE shop.audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40)) ENGINE=InnoDB",
		"CREATE TRIGGER shop.tr_b BEFORE INSERT ON shop.parent FOR EACH ROW SET NEW.name = CONCAT(NEW.name, '-b')",
		"CREATE TRIGGER shop.tr_a BEFORE INSERT ON shop.parent FOR EACH ROW FOLLOWS tr_b SET NEW.name = CONCAT(NEW.name, '-a')",
		"CREATE TRIGGER shop.tr_audit AFTER INSERT ON shop.child FOR EACH ROW INSERT INTO shop.audit (what) VALUES (CONCAT('child ', NEW.id))",
		"CREATE EVENT shop.ev_tidy ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM shop.audit",
		// Accounts.
		"CREATE USER 'app'@'%' IDENTIFIED BY 'secret pw'",
		"CREATE USER 'ro'@'10.0.0.%' IDENTIFIED BY 'x'",
		"GRANT SELECT, INSERT ON shop.* TO 'app'@'%'",
		"GRANT SELECT (id, vc) ON shop.types TO 'ro'@'10.0.0.%'",
		"GRANT EXECUTE ON PROCEDURE shop.p_count TO 'ro'@'10.0.0.%'",
	)
	if fl == flavor.MariaDB {
		execAll(t, db,
			"CREATE ROLE reader",
			"GRANT SELECT ON shop.* TO reader",
			"GRANT reader TO 'app'@'%'",
			"SET DEFAULT ROLE reader FOR 'app'@'%'",
			"CREATE SEQUENCE shop.seq START WITH 100 INCREMENT BY 5 CACHE 10",
			"SELECT NEXTVAL(shop.seq)",
			"SELECT NEXTVAL(shop.seq)",
			"CREATE TABLE shop.hist (id INT PRIMARY KEY, a INT) WITH SYSTEM VERSIONING",
			"INSERT INTO shop.hist VALUES (1, 1), (2, 2)",
			"UPDATE shop.hist SET a = a + 10",
			"DELETE FROM shop.hist WHERE id = 2",
			"CREATE TABLE shop.hist2 (id INT PRIMARY KEY, a INT, rs TIMESTAMP(6) GENERATED ALWAYS AS ROW START, "+
				"re TIMESTAMP(6) GENERATED ALWAYS AS ROW END, PERIOD FOR SYSTEM_TIME (rs, re)) WITH SYSTEM VERSIONING",
			"INSERT INTO shop.hist2 (id, a) VALUES (1, 1)",
			"UPDATE shop.hist2 SET a = 5",
		)
	} else {
		execAll(t, db,
			"CREATE ROLE 'reader'",
			"GRANT SELECT ON shop.* TO 'reader'",
			"GRANT 'reader' TO 'app'@'%'",
			"SET DEFAULT ROLE 'reader' TO 'app'@'%'",
		)
	}
}

// definitions returns what must be equal between source and target:
// every table's checksum and definition, every view, routine, trigger,
// event and sequence definition, and the test accounts.
func definitions(t *testing.T, db *sql.DB, fl flavor.Name, idx logical.Index) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range idx.Files {
		name := logical.QuoteName(f.Schema, f.Object)
		key := string(f.Kind) + " " + name
		switch f.Kind {
		case logical.KindTable:
			// MySQL sometimes writes a column's CHARACTER SET before its
			// COLLATE and sometimes not; a collation names its charset.
			def := autoInc.ReplaceAllString(rowsOf(t, db, "SHOW CREATE TABLE "+name)[0][1], "")
			out[key] = charsetCollate.ReplaceAllString(def, " COLLATE")
			out["checksum "+name] = rowsOf(t, db, "CHECKSUM TABLE "+name)[0][1]
			cols := strings.Join(quoteAll(f.Table.Columns), ",")
			q := "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('|'," + cols + "))) FROM " + name
			if f.Table.Versioned {
				q += " FOR SYSTEM_TIME ALL"
			}
			out["rows "+name] = fmt.Sprint(rowsOf(t, db, q))
		case logical.KindView:
			out[key] = rowsOf(t, db, "SHOW CREATE VIEW "+name)[0][1]
		case logical.KindRoutine:
			typ := "PROCEDURE"
			if strings.Contains(f.Name, ".function.") {
				typ = "FUNCTION"
			}
			r := rowsOf(t, db, "SHOW CREATE "+typ+" "+name)[0]
			out[key] = strings.Join(r[1:5], "\n")
		case logical.KindTrigger:
			r := rowsOf(t, db, "SHOW CREATE TRIGGER "+name)[0]
			out[key] = strings.Join(r[1:5], "\n")
		case logical.KindEvent:
			r := rowsOf(t, db, "SHOW CREATE EVENT "+name)[0]
			out[key] = strings.Join(r[1:6], "\n")
		case logical.KindSequence:
			out[key] = rowsOf(t, db, "SHOW CREATE SEQUENCE "+name)[0][1]
			out["state "+name] = fmt.Sprint(rowsOf(t, db, "SELECT next_not_cached_value, cycle_count FROM "+name))
		}
	}
	for _, r := range rowsOf(t, db, "SELECT TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop' ORDER BY 1,2,3") {
		out["trigger order "+r[2]] = r[3]
	}
	for _, a := range []string{"'app'@'%'", "'ro'@'10.0.0.%'"} {
		out["user "+a] = rowsOf(t, db, "SHOW CREATE USER "+a)[0][0]
		// Column lists of grants come in hash order: compare them sorted.
		grants := fmt.Sprint(rowsOf(t, db, "SHOW GRANTS FOR "+a))
		out["grants "+a] = colList.ReplaceAllStringFunc(grants, func(s string) string {
			items := strings.Split(s[1:len(s)-1], ", ")
			sort.Strings(items)
			return "(" + strings.Join(items, ", ") + ")"
		})
	}
	return out
}

var charsetCollate = regexp.MustCompile(` CHARACTER SET [a-z0-9_]+ COLLATE`)

var colList = regexp.MustCompile("\\((`[^)]*`)\\)")

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = logical.QuoteIdent(n)
	}
	return out
}

func TestDumpRoundTrip(t *testing.T) {
	forFlavors(t, func(t *testing.T, fl flavor.Name) {
		ctx := context.Background()
		srcSrv, src := startServer(t, fl)
		fixture(t, src, fl)
		dir := t.TempDir()
		sink := newRecordingSink(dir, 0)
		// While the MyISAM table's data is stored, commits are blocked: a
		// write from another session times out waiting for the lock.
		probeErr := errors.New("the MyISAM table's data was never stored")
		sink.hook = func(f *logical.File) {
			if f.Kind != logical.KindData || f.Object != "mylog" {
				return
			}
			probeErr = func() error {
				c, err := src.Conn(ctx)
				if err != nil {
					return err
				}
				defer c.Close()
				if _, err := c.ExecContext(ctx, "SET SESSION lock_wait_timeout = 1"); err != nil {
					return err
				}
				_, err = c.ExecContext(ctx, "INSERT INTO shop.audit (what) VALUES ('probe')")
				return err
			}()
		}
		var progress []logical.DumpProgress
		res, err := logical.Dump(ctx, src, sink, logical.DumpOptions{FileSize: 1 << 10, StatementSize: 600,
			Progress: func(p logical.DumpProgress) { progress = append(progress, p) }})
		require.NoError(t, err)
		t.Logf("dump: lock %v, %d files, %d rows, %d bytes, binlog %s:%d, gtid %s",
			res.LockDuration, len(res.Index.Files), res.Rows, res.Bytes, res.BinlogFile, res.BinlogPos, res.GTIDSet)

		// The result.
		require.Equal(t, fl, res.Flavor.Name)
		require.NotEmpty(t, res.BinlogFile)
		require.NotZero(t, res.BinlogPos)
		var gtid string
		q := "SELECT @@gtid_binlog_pos"
		if fl == flavor.MySQL {
			q = "SELECT @@gtid_executed"
		}
		require.NoError(t, src.QueryRow(q).Scan(&gtid))
		require.Equal(t, gtid, res.GTIDSet, "no writes since: the dump's GTID set is the server's")
		require.Positive(t, res.LockDuration)
		require.Less(t, res.LockDuration, 10*time.Second)
		require.WithinDuration(t, time.Now(), res.ConsistentAt, time.Minute)
		require.Equal(t, logical.FormatVersion, res.Index.Format)
		require.NotEmpty(t, progress)
		last := progress[len(progress)-1]
		require.Equal(t, len(res.Index.Files), last.Files)
		require.Equal(t, res.Rows, last.Rows)
		require.Equal(t, last.Tables, last.TablesDone)

		// The Index: kinds in load order, every file's bytes as listed.
		order := map[logical.Kind]int{}
		for i, k := range []logical.Kind{logical.KindUsers, logical.KindDatabase, logical.KindTable, logical.KindSequence,
			logical.KindData, logical.KindView, logical.KindRoutine, logical.KindTrigger, logical.KindEvent, logical.KindGrants} {
			order[k] = i
		}
		byKey := map[string]*logical.File{}
		names := map[string]bool{}
		var sum int64
		for i := range res.Index.Files {
			f := &res.Index.Files[i]
			require.False(t, names[f.Name], "duplicate name %s", f.Name)
			names[f.Name] = true
			if i > 0 {
				require.LessOrEqual(t, order[res.Index.Files[i-1].Kind], order[f.Kind], "kind order at %s", f.Name)
			}
			r, err := logical.DirSource{Dir: dir}.Open(ctx, f)
			require.NoError(t, err)
			b := make([]byte, f.Size+1)
			n, _ := r.Read(b)
			for n < int(f.Size) {
				m, err := r.Read(b[n:])
				n += m
				if err != nil {
					break
				}
			}
			r.Close()
			require.EqualValues(t, f.Size, n)
			sum += f.Size
			if f.Kind != logical.KindData {
				require.True(t, strings.HasPrefix(string(b[:n]), "DELIMITER ;;\n"), f.Name)
				require.True(t, strings.HasSuffix(string(b[:n]), "\n;;\n"), f.Name)
				require.NotContains(t, string(b[:n]), "\nUSE ", f.Name)
			}
			byKey[string(f.Kind)+" "+f.Schema+"."+f.Object] = f
		}
		require.Equal(t, res.Bytes, sum)

		types := byKey["table shop.types"]
		require.NotNil(t, types)
		require.Equal(t, []string{"id", "ti", "si", "mi", "bi", "sb", "dc", "f", "d", "bt", "c", "vc", "tx", "lt", "bn", "vb",
			"bl", "lb", "e", "st", "dt", "dtt", "ts", "tm", "yr", "js", "g", "inv"}, types.Table.Columns,
			"generated columns are not dumped, invisible ones are")
		require.Equal(t, []string{"id"}, types.Table.PrimaryKey)
		require.Equal(t, []string{"KEY `by_vc` (`vc`)", "FULLTEXT KEY `ft` (`tx`)"}, types.Table.DeferredIndexes)
		require.EqualValues(t, 3, types.Table.Rows)
		require.Empty(t, byKey["table shop.parent"].Table.DeferredIndexes, "referenced by a foreign key")
		require.Empty(t, byKey["table shop.child"].Table.DeferredIndexes, "has a foreign key")
		require.Equal(t, []string{"SPATIAL KEY `sp` (`p`)"}, byKey["table shop.geo"].Table.DeferredIndexes)
		require.Empty(t, byKey["table shop.nokey"].Table.PrimaryKey)
		require.Zero(t, byKey["table shop.mrg"].Table.Parts, "no data files for a MERGE table")
		require.Nil(t, byKey["data shop.mrg"])
		require.Equal(t, []string{"a", "b"}, byKey["table shop.ckey"].Table.PrimaryKey)
		sel := byKey["table "+oddSchema+".select"]
		require.Equal(t, []string{"from"}, sel.Table.PrimaryKey, "a unique key of NOT NULL columns splits too")
		require.Empty(t, sel.Table.DeferredIndexes, "the key that splits the dump stays")
		require.NotNil(t, byKey["table "+oddSchema+"."+oddTable])
		require.NotNil(t, byKey["view "+oddSchema+".v`iew"])
		require.NotNil(t, byKey["users ."])
		if fl == flavor.MariaDB {
			require.True(t, byKey["table shop.hist"].Table.Versioned)
			require.Equal(t, []string{"id", "a", "row_start", "row_end"}, byKey["table shop.hist"].Table.Columns)
			require.EqualValues(t, 4, byKey["table shop.hist"].Table.Rows, "history rows are dumped")
			require.Equal(t, []string{"id", "a", "rs", "re"}, byKey["table shop.hist2"].Table.Columns)
			require.NotNil(t, byKey["sequence shop.seq"])
		}
		// Views in dependency order: v1 before a_v2 before a_v3.
		var views []string
		for _, f := range res.Index.Files {
			if f.Kind == logical.KindView && f.Schema == "shop" {
				views = append(views, f.Object)
			}
		}
		require.Equal(t, []string{"v1", "a_v2", "a_v3"}, views)

		// Data files: the header, then one INSERT per line with the exact
		// prefix, every table's parts numbered 0..n-1.
		parts := map[string][]*logical.File{}
		for i := range res.Index.Files {
			f := &res.Index.Files[i]
			if f.Kind != logical.KindData {
				continue
			}
			k := f.Schema + "." + f.Object
			require.Equal(t, len(parts[k]), f.Part, "part numbers of %s", k)
			parts[k] = append(parts[k], f)
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Name)))
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			require.Equal(t, "/*!40101 SET NAMES binary */;", lines[0])
			table := byKey["table "+k]
			prefix := "INSERT INTO " + logical.QuoteIdent(f.Object) + " (" + strings.Join(quoteAll(table.Table.Columns), ",") + ") VALUES ("
			var rows int64
			for _, l := range lines[1:] {
				if strings.HasPrefix(l, "INSERT ") {
					require.True(t, strings.HasPrefix(l, prefix), "%s: %q", f.Name, l)
					require.True(t, strings.HasSuffix(l, ");"), "%s: %q", f.Name, l)
					rows++
				} else {
					require.Zero(t, rows, "%s: a session line after the INSERTs: %q", f.Name, l)
					require.True(t, strings.HasSuffix(l, ";"), l)
				}
			}
			if f.Rows > 0 {
				require.Positive(t, rows)
			}
		}
		for k, fs := range parts {
			require.Equal(t, byKey["table "+k].Table.Parts, len(fs), k)
		}
		// The MyISAM table was dumped while commits were blocked.
		require.Error(t, probeErr, "a write while the MyISAM table was stored went through: the lock was not held")
		require.Contains(t, probeErr.Error(), "1205", "the write waited for the global read lock")
		lines := strings.Join(dataLines(t, dir, res.Index, "shop", "types"), "\n")
		require.Contains(t, lines, "'emoji \xf0\x9f\x98\x80\xf0\x9d\x84\x9e")
		require.Contains(t, lines, "X''")

		// Loaded by hand into a fresh server, everything is the same.
		// Same root password: the users file carries root's accounts too
		// (MariaDB's GRANT lines name the password hash).
		tgt, tdb := startServerOpts(t, testdb.Options{Flavor: fl, Password: srcSrv.Password})
		loadByHand(t, tgt, dir, res.Index)
		want := definitions(t, src, fl, res.Index)
		got := definitions(t, tdb, fl, res.Index)
		for k, v := range want {
			require.Equal(t, v, got[k], k)
		}
		// The triggers fire in their order on the target too.
		execAll(t, tdb, "INSERT INTO shop.parent VALUES (3, 'p3')")
		var name string
		require.NoError(t, tdb.QueryRow("SELECT name FROM shop.parent WHERE id = 3").Scan(&name))
		require.Equal(t, "p3-b-a", name)
		if fl == flavor.MariaDB {
			var next int64
			require.NoError(t, tdb.QueryRow("SELECT NEXTVAL(shop.seq)").Scan(&next))
			require.GreaterOrEqual(t, next, int64(110), "the sequence goes on after the values handed out")
		}
	})
}
