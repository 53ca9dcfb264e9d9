package tablecopy

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/testdb"
)

// pair is a scratch server and a live server of one flavor.
type pair struct {
	scratch, live       *sql.DB
	scratchDir, liveDir string
}

func newPair(t *testing.T, fl flavor.Name) *pair {
	t.Helper()
	s := testdb.ForTest(t, testdb.Options{Flavor: fl})
	l := testdb.ForTest(t, testdb.Options{Flavor: fl})
	sdb, err := s.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { sdb.Close() })
	ldb, err := l.DB("")
	require.NoError(t, err)
	t.Cleanup(func() { ldb.Close() })
	return &pair{scratch: sdb, live: ldb, scratchDir: s.Datadir, liveDir: l.Datadir}
}

func exec(t *testing.T, db *sql.DB, qs ...string) {
	t.Helper()
	for _, q := range qs {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
}

func (p *pair) params(src, dst TableName, id string) Params {
	return Params{Scratch: p.scratch, ScratchDatadir: p.scratchDir, Live: p.live, LiveDatadir: p.liveDir, Src: src, Dst: dst, RestoreID: id}
}

// leftovers are the work tables and work files left on the live server.
func (p *pair) leftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	rows, err := p.live.Query("SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_NAME LIKE 'strata\\_%'")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	files, err := filepath.Glob(filepath.Join(p.liveDir, "*", "strata_*"))
	require.NoError(t, err)
	return append(out, files...)
}

func TestCopyTransportsATableWithOddNames(t *testing.T) {
	for _, fl := range []flavor.Name{flavor.MariaDB, flavor.MySQL} {
		t.Run(string(fl), func(t *testing.T) { testCopyTransports(t, fl) })
	}
}

func testCopyTransports(t *testing.T, fl flavor.Name) {
	p := newPair(t, fl)
	ctx := context.Background()
	// The source: odd names (non-ASCII, a space, a dot), a foreign key, a
	// trigger, blobs and utf8mb4; the live server has the schema, and a
	// table holding the foreign key's constraint name.
	ddl := []string{
		"CREATE DATABASE `sch ö.x`",
		"CREATE TABLE `sch ö.x`.parent (id INT PRIMARY KEY) ENGINE=InnoDB",
		"CREATE TABLE `sch ö.x`.`tö x` (id INT PRIMARY KEY AUTO_INCREMENT, p INT, b LONGBLOB, s VARCHAR(100) CHARACTER SET utf8mb4, " +
			"KEY (s), CONSTRAINT fk1 FOREIGN KEY (p) REFERENCES parent (id)) ENGINE=InnoDB",
		"CREATE TABLE `sch ö.x`.log (n INT)",
		"CREATE TRIGGER `sch ö.x`.tr1 AFTER INSERT ON `sch ö.x`.`tö x` FOR EACH ROW INSERT INTO `sch ö.x`.log VALUES (1)",
	}
	exec(t, p.scratch, ddl...)
	exec(t, p.live, ddl[:4]...)
	exec(t, p.live, "INSERT INTO `sch ö.x`.parent VALUES (1), (2)")
	exec(t, p.scratch, "INSERT INTO `sch ö.x`.parent VALUES (1), (2)")
	for i := 0; i < 200; i++ {
		_, err := p.scratch.Exec("INSERT INTO `sch ö.x`.`tö x` (p, b, s) VALUES (1 + ? % 2, REPEAT(UNHEX('00FF'), ? * 50), ?)", i, i, "😀 ö "+strings.Repeat("x", i%50))
		require.NoError(t, err)
	}
	src := TableName{Schema: "sch ö.x", Table: "tö x"}
	want, err := Checksum(ctx, p.scratch, src)
	require.NoError(t, err)

	// (1) The destination exists on the live server: refused, untouched.
	before, err := Checksum(ctx, p.live, src)
	require.NoError(t, err)
	_, err = Copy(ctx, p.params(src, src, "r1"))
	require.ErrorIs(t, err, ErrTableExists)
	assert.Contains(t, err.Error(), "--as")
	after, err := Checksum(ctx, p.live, src)
	require.NoError(t, err)
	assert.Equal(t, before, after)
	assert.Empty(t, p.leftovers(t))

	// (2) An unknown table: TableNotFound naming it.
	_, err = Copy(ctx, p.params(TableName{"sch ö.x", "nope"}, TableName{"sch ö.x", "nope"}, "r2"))
	require.ErrorIs(t, err, ErrTableNotFound)
	assert.Contains(t, err.Error(), "nope")

	// (3) Under a new, odd name: transported, the checksum of the source.
	dst := TableName{Schema: "sch ö.x", Table: "tö x.restored ü"}
	res, err := Copy(ctx, p.params(src, dst, "r3"))
	require.NoError(t, err)
	assert.Equal(t, MethodTransport, res.Method)
	assert.Equal(t, want, res.SourceSum)
	assert.Equal(t, want, res.DestSum)
	got, err := Checksum(ctx, p.live, dst)
	require.NoError(t, err)
	assert.Equal(t, want, got, "the live table has the source's rows and checksum")
	assert.Positive(t, res.Bytes)
	assert.NotEmpty(t, res.Notes)
	assert.Empty(t, p.leftovers(t), "no work table or file is left")
	// The foreign key holds on the live server (a generated name).
	_, err = p.live.Exec("INSERT INTO " + dst.Quoted() + " (p) VALUES (99)")
	require.Error(t, err, "the restored table keeps its foreign key")
	// The server can write and read the imported table.
	exec(t, p.live, "INSERT INTO "+dst.Quoted()+" (p, s) VALUES (1, 'new')")
	var n int
	require.NoError(t, p.live.QueryRow("SELECT COUNT(*) FROM "+dst.Quoted()+" WHERE s LIKE '😀%'").Scan(&n))
	assert.Equal(t, 200, n)

	// (4) Replace: the existing live table gets the source's contents.
	// The scratch server moved the source to its export name: re-create it.
	exec(t, p.scratch, "CREATE TABLE `sch ö.x`.`tö x` LIKE strata_export.t_r3", "INSERT INTO `sch ö.x`.`tö x` SELECT * FROM strata_export.t_r3")
	res, err = Copy(ctx, Params{Scratch: p.scratch, ScratchDatadir: p.scratchDir, Live: p.live, LiveDatadir: p.liveDir, Src: src, Dst: src, RestoreID: "r4", Replace: true})
	require.NoError(t, err)
	assert.True(t, res.Replaced)
	got, err = Checksum(ctx, p.live, src)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Empty(t, p.leftovers(t))
}

func TestCopyCleansUpAfterAFailureAndCopiesWhatCannotMoveLogically(t *testing.T) {
	p := newPair(t, flavor.MariaDB)
	ctx := context.Background()
	exec(t, p.scratch, "CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB",
		"INSERT INTO shop.orders VALUES (1, 'a'), (2, 'b')", "CREATE TABLE shop.m (id INT PRIMARY KEY) ENGINE=MyISAM",
		"CREATE TABLE shop.parts (id INT PRIMARY KEY) ENGINE=InnoDB PARTITION BY HASH (id) PARTITIONS 2",
		"INSERT INTO shop.m VALUES (1), (2), (3)", "INSERT INTO shop.parts VALUES (1), (2), (3), (4)")
	exec(t, p.live, "CREATE DATABASE shop")
	src := TableName{"shop", "orders"}

	// (1) Cancelled after the tablespace was discarded and the files
	// copied: no half-made table, no file left, no destination.
	cctx, cancel := context.WithCancel(ctx)
	prm := p.params(src, src, "c1")
	prm.Progress = func(step string, _ int64) {
		if strings.HasPrefix(step, "importing") {
			cancel()
		}
	}
	_, err := Copy(cctx, prm)
	require.Error(t, err)
	assert.Empty(t, p.leftovers(t))
	ok, err := Exists(ctx, p.live, src)
	require.NoError(t, err)
	assert.False(t, ok)

	// The retry (same restore id, the scratch table already moved) works.
	res, err := Copy(ctx, p.params(src, src, "c1"))
	require.NoError(t, err)
	assert.Equal(t, int64(2), res.DestSum.Rows)
	assert.Empty(t, p.leftovers(t))
	// An attempt that died after its rename: the next attempt finds the
	// table done (same rows and checksum), not "exists"; a first attempt,
	// or a table that differs, is refused.
	prm = p.params(src, src, "c1")
	_, err = Copy(ctx, prm)
	require.ErrorIs(t, err, ErrTableExists)
	prm.Retry = true
	res, err = Copy(ctx, prm)
	require.NoError(t, err)
	assert.Equal(t, res.SourceSum, res.DestSum)
	assert.Contains(t, res.Notes[0], "earlier attempt")
	exec(t, p.live, "INSERT INTO shop.orders VALUES (3, 'c')")
	_, err = Copy(ctx, prm)
	require.ErrorIs(t, err, ErrTableExists)

	// (2) MyISAM and partitioned: their tablespaces do not move, so they are
	// copied through the logical dump and load, with the same checksum;
	// nothing else is left on the live server.
	for _, name := range []string{"m", "parts"} {
		res, err := Copy(ctx, p.params(TableName{"shop", name}, TableName{"shop", name}, "n"+name))
		require.NoError(t, err, name)
		assert.Equal(t, MethodLogical, res.Method, name)
		assert.Equal(t, res.SourceSum, res.DestSum, name)
		assert.Greater(t, res.DestSum.Rows, int64(0), name)
	}
	assert.Empty(t, p.leftovers(t))

	// (3) A configured datadir that is not the live server's: refused
	// before anything changes.
	prm = p.params(TableName{"shop", "orders"}, TableName{"shop", "o2"}, "d1")
	prm.LiveDatadir = t.TempDir()
	_, err = Copy(ctx, prm)
	require.ErrorIs(t, err, ErrDatadir)

	// (4) A schema the live server lacks.
	exec(t, p.scratch, "CREATE TABLE shop.o4 (id INT PRIMARY KEY) ENGINE=InnoDB")
	_, err = Copy(ctx, p.params(TableName{"shop", "o4"}, TableName{"nodb", "o"}, "s1"))
	require.ErrorIs(t, err, ErrSchemaNotFound)

	// (5) A file named like the work table's (which only a restore of
	// this id uses) is an earlier attempt's: removed, and the copy works.
	exec(t, p.scratch, "CREATE TABLE shop.o3 (id INT PRIMARY KEY) ENGINE=InnoDB")
	require.NoError(t, os.WriteFile(filepath.Join(p.liveDir, "shop", "strata_restore_p1.cfg"), []byte("planted"), 0o600))
	_, err = Copy(ctx, p.params(TableName{"shop", "o3"}, TableName{"shop", "o3"}, "p1"))
	require.NoError(t, err)
	assert.Empty(t, p.leftovers(t))
}

func TestParseTableName(t *testing.T) {
	for in, want := range map[string]TableName{
		"shop.orders":        {"shop", "orders"},
		"`a.b`.`c``d`":       {"a.b", "c`d"},
		"`sch ö`.tö":         {"sch ö", "tö"},
		"shop.`orders.2026`": {"shop", "orders.2026"},
	} {
		got, err := ParseTableName(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
		back, err := ParseTableName(got.String())
		require.NoError(t, err)
		assert.Equal(t, got, back, "String parses back")
	}
	for _, bad := range []string{"", "orders", "a.b.c", "`a", "a.", ".b", "a.b`c", "`a`x.b", "a." + strings.Repeat("x", 65), "a.b "} {
		_, err := ParseTableName(bad)
		assert.Error(t, err, bad)
	}
}

func TestDefinition(t *testing.T) {
	tb := &Table{Name: TableName{"s", "t"}, RowFormat: "Dynamic",
		Create: "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `p` int,\n  PRIMARY KEY (`id`),\n  CONSTRAINT `t_ibfk_1` FOREIGN KEY (`p`) REFERENCES `q` (`id`)\n) ENGINE=InnoDB"}
	got, fks, err := Definition(tb, TableName{"s", "w`x"})
	require.NoError(t, err)
	assert.True(t, fks)
	assert.True(t, strings.HasPrefix(got, "CREATE TABLE `s`.`w``x` (\n"), got)
	assert.NotContains(t, got, "t_ibfk_1")
	assert.True(t, strings.HasSuffix(got, "ENGINE=InnoDB ROW_FORMAT=DYNAMIC"), got)
	tb.Create = "CREATE TABLE `t` (`id` int) ROW_FORMAT=COMPACT"
	got, _, err = Definition(tb, TableName{"s", "w"})
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(got, "ROW_FORMAT="), got)
	tb.Create = "CREATE VIEW `t` AS SELECT 1"
	_, _, err = Definition(tb, TableName{"s", "w"})
	require.Error(t, err)
}
