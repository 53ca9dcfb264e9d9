package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/flavor"
)

func TestPurgedBinlogIsAGapAndPITRAcrossItIsRefused(t *testing.T) {
	forFlavors(t, testPurgedBinlogIsAGapAndPITRAcrossItIsRefused)
}

func testPurgedBinlogIsAGapAndPITRAcrossItIsRefused(t *testing.T, fl flavor.Name) {
	s := newStack(t, withFlavor(fl))
	db := s.numbered()
	arch := s.startArchive("db1", 20*time.Second)
	insertRows(t, db, 1, 50)
	s.backup("b1", "full")
	insertRows(t, db, 51, 100)
	gtid100 := gtidPos(t, db)
	s.waitArchived("db1", gtid100)
	s.stopArchive(arch)

	// While nobody archives, rows are written and their binlog is purged.
	insertRows(t, db, 101, 150)
	_, err := db.Exec("FLUSH BINARY LOGS")
	require.NoError(t, err)
	file, _ := masterPos(t, db)
	// The server keeps a binlog that a replica's dump thread still has open
	// (the stopped archiver's connection may take a moment to go): purge
	// until the file is really gone.
	require.Eventually(t, func() bool {
		if _, err := db.Exec(fmt.Sprintf("PURGE BINARY LOGS TO '%s'", file)); err != nil {
			return false
		}
		var first string
		rows, err := db.Query("SHOW BINARY LOGS")
		if err != nil {
			return false
		}
		defer rows.Close()
		if rows.Next() {
			cols, _ := rows.Columns()
			dest := []any{&first}
			for len(dest) < len(cols) {
				dest = append(dest, new(any))
			}
			_ = rows.Scan(dest...)
		}
		return first == file
	}, 30*time.Second, 200*time.Millisecond, "binlog purged")
	insertRows(t, db, 151, 220)
	gtid220 := gtidPos(t, db)

	arch = s.startArchive("db1", 20*time.Second)
	s.waitArchived("db1", gtid220)

	st := &binlog.Store{B: s.repo.Backend(), Instance: "db1"}
	ix, err := st.ReadIndex(s.ctx)
	require.NoError(t, err)
	require.Len(t, ix.Gaps, 1, "the purged binlog is a gap")
	assert.Contains(t, ix.Gaps[0].Reason, "purged")
	assert.Len(t, ix.Runs(), 2)

	// The status the operator sees shows the gap.
	out, err := s.cli("archive", "status", "db1")
	require.NoError(t, err, out)
	assert.Contains(t, out, "GAP")
	assert.Contains(t, out, "purged")
	// And the bill: what is stored, and the writes, all made within the
	// test's hour: two per segment, one per other object.
	assert.Regexp(t, `storage +[0-9,]+ objects, .* \(records [0-9,]+, roll-ups [0-9,]+, data [0-9,]+, packs [0-9,]+, gaps 1, keys 0\)`, out)
	assert.Regexp(t, `writes +[0-9,]+ in the last hour, [0-9,]+/h \(the archive is younger than an hour`, out)
	out, err = s.cli("archive", "status", "db1", "--json")
	require.NoError(t, err, out)
	var rep struct {
		Segments int          `json:"segments"`
		Bill     *binlog.Bill `json:"bill"`
	}
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep), out)
	require.NotNil(t, rep.Bill, out)
	assert.Equal(t, 1, rep.Bill.Objects[binlog.BillGaps])
	assert.Zero(t, rep.Bill.Objects[binlog.BillOther])
	assert.GreaterOrEqual(t, rep.Bill.Objects[binlog.BillData]+rep.Bill.Objects[binlog.BillPacks], 1)
	others := rep.Bill.TotalObjects - rep.Bill.Objects[binlog.BillRecords] - rep.Bill.Objects[binlog.BillData]
	assert.Equal(t, 2*rep.Segments+others, rep.Bill.Writes, "no orphan, nothing pruned")
	assert.Equal(t, rep.Bill.Writes, rep.Bill.WritesLastHour)
	out, err = s.cli("ls", "db1")
	require.NoError(t, err, out)
	assert.Contains(t, out, "PITR window")
	assert.Contains(t, out, "GAP")

	// PITR before the gap works; across it, it is refused with the gap named.
	rdb, _, err := s.pitr(binlog.Target{GTID: gtid100}, "")
	require.NoError(t, err)
	n, _ := countRows(t, rdb)
	assert.Equal(t, 100, n)
	_, _, err = s.pitr(binlog.Target{GTID: gtid220}, "")
	requireAppError(t, err, "OutsideRecoveryWindow", "purged")

	// A new backup after the gap opens a new window.
	s.backup("b2", "full")
	insertRows(t, db, 221, 230)
	gtid230 := gtidPos(t, db)
	s.waitArchived("db1", gtid230)
	rdb, res, err := s.pitr(binlog.Target{GTID: gtid230}, "")
	require.NoError(t, err)
	assert.Equal(t, "b2", res.BackupID)
	n, _ = countRows(t, rdb)
	assert.Equal(t, 230, n)
	// The workflow's status query answers the windows and the gap too.
	st2 := s.stopArchive(arch)
	require.Len(t, st2.Gaps, 1)
	assert.Contains(t, st2.Gaps[0].Reason, "purged")
	require.Len(t, st2.Windows, 2, "one window before the gap, one after")
	assert.Equal(t, "b2", st2.Windows[1].FromBackup)
}
