package tablecopy

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
)

// Tables whose CHECKSUM TABLE differs after an import although their rows
// are equal (virtual and instantly added columns, system versioning), a
// spatial index, and FULLTEXT indexes, which must be rebuilt (MySQL) or
// refused (MariaDB, which crashed rebuilding one).
func TestCopyOfTablesThatNeedCare(t *testing.T) {
	for _, fl := range []flavor.Name{flavor.MariaDB, flavor.MySQL} {
		t.Run(string(fl), func(t *testing.T) { testCopyOfTablesThatNeedCare(t, fl) })
	}
}

func testCopyOfTablesThatNeedCare(t *testing.T, fl flavor.Name) {
	p := newPair(t, fl)
	ctx := context.Background()
	srid := " SRID 0"
	if fl == flavor.MariaDB {
		srid = ""
	}
	ddl := []string{"CREATE DATABASE s",
		"CREATE TABLE s.ft (id INT PRIMARY KEY, body TEXT, FULLTEXT KEY (body)) ENGINE=InnoDB",
		"INSERT INTO s.ft VALUES (1, 'hello world'), (2, 'other text')",
		"CREATE TABLE s.gen (id INT PRIMARY KEY, a INT, b INT AS (a*2) VIRTUAL, c INT AS (a+1) STORED, KEY (b)) ENGINE=InnoDB",
		"INSERT INTO s.gen (id, a) VALUES (1, 5), (2, 7)",
		"CREATE TABLE s.inst (id INT PRIMARY KEY, a INT) ENGINE=InnoDB",
		"INSERT INTO s.inst VALUES (1, 1)",
		"ALTER TABLE s.inst ADD COLUMN z INT DEFAULT 9, ALGORITHM=INSTANT",
		"INSERT INTO s.inst VALUES (2, 2, 3)",
		"CREATE TABLE s.sp (id INT PRIMARY KEY, g GEOMETRY NOT NULL" + srid + ", SPATIAL KEY (g)) ENGINE=InnoDB",
		"INSERT INTO s.sp VALUES (1, POINT(1,2))",
	}
	tables := []string{"gen", "inst", "sp"}
	if fl == flavor.MariaDB {
		ddl = append(ddl, "CREATE TABLE s.sv (id INT PRIMARY KEY, a INT) WITH SYSTEM VERSIONING ENGINE=InnoDB", "INSERT INTO s.sv VALUES (1, 1)", "UPDATE s.sv SET a = 2")
		tables = append(tables, "sv")
	}
	exec(t, p.scratch, ddl...)
	exec(t, p.live, "CREATE DATABASE s")
	for _, tb := range tables {
		src := TableName{"s", tb}
		want, err := contentSum(ctx, p.scratch, src)
		require.NoError(t, err)
		res, err := Copy(ctx, p.params(src, TableName{"s", tb + "_r"}, "p"+tb))
		require.NoError(t, err, tb)
		got, err := contentSum(ctx, p.live, TableName{"s", tb + "_r"})
		require.NoError(t, err)
		assert.Equal(t, want, got, "%s: the rows' values", tb)
		assert.Equal(t, res.SourceSum.Rows, res.DestSum.Rows)
		t.Logf("%s: %+v %+v %v", tb, res.SourceSum, res.DestSum, res.Notes)
	}
	// A retry after the rename finds such a table done too.
	prm := p.params(TableName{"s", "inst"}, TableName{"s", "inst_r"}, "pinst")
	prm.Retry = true
	res, err := Copy(ctx, prm)
	require.NoError(t, err)
	assert.Contains(t, res.Notes[0], "earlier attempt")

	// The content sum sees a changed value.
	exec(t, p.live, "UPDATE s.gen_r SET a = 6 WHERE id = 1")
	a, err := contentSum(ctx, p.live, TableName{"s", "gen_r"})
	require.NoError(t, err)
	b, err := contentSum(ctx, p.scratch, TableName{"strata_export", "t_pgen"})
	require.NoError(t, err)
	assert.NotEqual(t, a, b)

	res, err = Copy(ctx, p.params(TableName{"s", "ft"}, TableName{"s", "ft_r"}, "pft"))
	// MariaDB: through the logical copy (an imported FULLTEXT index cannot
	// be rebuilt there); MySQL: transported, its FULLTEXT index rebuilt.
	require.NoError(t, err)
	assert.Equal(t, res.SourceSum, res.DestSum)
	if fl == flavor.MariaDB {
		assert.Equal(t, MethodLogical, res.Method)
	} else {
		assert.Equal(t, MethodTransport, res.Method)
	}
	var n int
	require.NoError(t, p.live.QueryRow("SELECT COUNT(*) FROM s.ft_r WHERE MATCH(body) AGAINST ('hello')").Scan(&n))
	assert.Equal(t, 1, n, "the FULLTEXT index answers")
	assert.Empty(t, p.leftovers(t))
}
