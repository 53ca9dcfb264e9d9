package drill_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
)

func TestSumSQLQuotesIdentifiers(t *testing.T) {
	q := drill.SumSQL("we`ird", "t`1", []string{"id", "co`l", "ü 名"})
	assert.Equal(t, "SELECT COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', "+
		"IFNULL(MD5(CAST(`id` AS BINARY)), 'N'), IFNULL(MD5(CAST(`co``l` AS BINARY)), 'N'), IFNULL(MD5(CAST(`ü 名` AS BINARY)), 'N'))), 16), 16, 10) AS UNSIGNED)), 0) "+
		"FROM `we``ird`.`t``1`", q)
	// Every backtick of a name is doubled: no name ends the quoting.
	assert.Equal(t, "`a````b`", drill.QuoteIdent("a``b"))
}

func TestCompareSums(t *testing.T) {
	ts := func(schema, table string, rows int64, sum string) manifest.TableSum {
		return manifest.TableSum{Schema: schema, Table: table, Rows: rows, Checksum: sum}
	}
	want := []manifest.TableSum{ts("a", "t1", 3, "100"), ts("a", "t2", 5, "200"), ts("b", "t1", 0, "0"), ts("b", "gone", 1, "7")}

	n, problems := drill.CompareSums(want, want)
	assert.Equal(t, 4, n)
	assert.Empty(t, problems)

	got := []manifest.TableSum{ts("a", "t1", 4, "101"), ts("a", "t2", 5, "201"), ts("b", "t1", 0, "0"), ts("b", "new", 2, "9")}
	n, problems = drill.CompareSums(want, got)
	assert.Equal(t, 3, n)
	assert.Equal(t, []string{
		"table a.t1 has 4 rows, the backup recorded 3 (checksum 101, recorded 100)",
		"table a.t2 has checksum 201, the backup recorded 200 (5 rows)",
		"table b.gone is missing: the backup recorded 1 rows, checksum 7",
		"table b.new is not in the backup's sums: 2 rows, checksum 9",
	}, problems)

	// A table named with a dot is not confused with another schema's table.
	n, problems = drill.CompareSums([]manifest.TableSum{ts("a.b", "c", 1, "1")}, []manifest.TableSum{ts("a", "b.c", 1, "1")})
	assert.Equal(t, 0, n, "a.b/c and a/b.c are different tables")
	assert.Len(t, problems, 2)
}

func TestMatchBackupPoint(t *testing.T) {
	for _, c := range []struct {
		name       string
		sumsFile   string
		sumsPos    uint64
		backupFile string
		backupPos  uint64
		want       bool
	}{
		{"same position", "bin.000002", 1234, "bin.000002", 1234, true},
		{"later position", "bin.000002", 1300, "bin.000002", 1234, false},
		{"other file", "bin.000003", 1234, "bin.000002", 1234, false},
		{"no binlog at the snapshot", "", 0, "bin.000002", 1234, false},
		{"backup recorded no position", "bin.000002", 1234, "", 0, false},
		{"neither known", "", 0, "", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := &manifest.TableSums{BinlogFile: c.sumsFile, BinlogPos: c.sumsPos, AtBackupPoint: !c.want}
			drill.MatchBackupPoint(ts, c.backupFile, c.backupPos)
			assert.Equal(t, c.want, ts.AtBackupPoint)
		})
	}
}

func TestParseTable(t *testing.T) {
	s, tb, err := drill.ParseTable("strata.heartbeat")
	assert.NoError(t, err)
	assert.Equal(t, []string{"strata", "heartbeat"}, []string{s, tb})
	for _, bad := range []string{"", "heartbeat", ".t", "s.", "a.b.c", "a`.b", "a.b\x00"} {
		_, _, err := drill.ParseTable(bad)
		assert.Error(t, err, "%q", bad)
		if err != nil {
			assert.True(t, strings.Contains(err.Error(), "schema.table"))
		}
	}
}

func TestGlobalSelect(t *testing.T) {
	for g, want := range map[string]bool{
		"GRANT SELECT ON *.* TO `backup`@`%`": true,
		"GRANT RELOAD, PROCESS, SELECT, LOCK TABLES ON *.* TO `backup`@`%` IDENTIFIED BY PASSWORD '*X'": true,
		"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION":                           true,
		"GRANT SELECT ON *.* TO `reader`":                                                               true,
		"GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO `backup`@`%`":                     false,
		"GRANT SELECT ON `app`.* TO `backup`@`%`":                                                       false,
		"GRANT SELECT (`a`) ON `app`.`t` TO `backup`@`%`":                                               false,
		"GRANT `reader` TO `backup`@`%`":                                                                false,
		"GRANT INSERT, DELETE HISTORY ON *.* TO `x`@`%`":                                                false,
	} {
		assert.Equal(t, want, drill.GlobalSelect(g), g)
	}
}

func TestChecksumsComparableOnlyOnTheSameVersion(t *testing.T) {
	ok, note := drill.ChecksumsComparable(manifest.SumsChecksumTable, "10.11.19-MariaDB-log", "10.11.19-MariaDB-log")
	assert.True(t, ok)
	assert.Empty(t, note)
	ok, note = drill.ChecksumsComparable(manifest.SumsChecksumTable, "10.11.19-MariaDB-log", "11.4.5-MariaDB")
	assert.False(t, ok)
	assert.Contains(t, note, "row counts only")
	ok, _ = drill.ChecksumsComparable(manifest.SumsRowMD5, "10.11.19-MariaDB-log", "11.4.5-MariaDB")
	assert.True(t, ok, "the MD5 sums are the server's SQL functions, comparable across versions")

	want := []manifest.TableSum{{Schema: "s", Table: "t", Rows: 3, Checksum: "123"}}
	got := []manifest.TableSum{{Schema: "s", Table: "t", Rows: 3, Checksum: "999"}}
	_, problems := drill.CompareSums(drill.RowsOnly(want), drill.RowsOnly(got))
	assert.Empty(t, problems, "row counts equal")
	got[0].Rows = 2
	_, problems = drill.CompareSums(drill.RowsOnly(want), drill.RowsOnly(got))
	assert.Len(t, problems, 1, "a row count still differs")
	assert.Equal(t, "123", want[0].Checksum, "RowsOnly copies")
}
