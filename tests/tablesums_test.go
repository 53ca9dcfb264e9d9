package tests

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/workflows"
)

// A backup of an idle server records the table sums of its consistent
// point in the manifest: at the backup's binlog position, equal to the
// source's sums, with the MyISAM table listed as skipped.
func TestBackupRecordsTableSumsAtItsConsistentPoint(t *testing.T) {
	s := newStack(t, withTableSums())
	db, _ := s.seeded(2 << 20)
	_, err := db.Exec("CREATE TABLE demo.plain_myisam (a INT PRIMARY KEY) ENGINE=MyISAM")
	require.NoError(t, err)

	var bres workflows.BackupResult
	_, err = s.run("backup/db1/sums", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: "sums"}, &bres)
	require.NoError(t, err)
	m, err := s.repo.ReadManifest(s.ctx, "db1", "sums")
	require.NoError(t, err)
	require.NotNil(t, m.TableSums, "table sums recorded")
	ts := m.TableSums
	assert.Equal(t, manifest.FormatVersionSumsAlgorithm, m.FormatVersion)
	assert.Equal(t, manifest.SumsChecksumTable, ts.Algorithm)
	assert.True(t, ts.AtBackupPoint, "sums at %s:%d, backup at %s:%d", ts.BinlogFile, ts.BinlogPos, m.BinlogFile, m.BinlogPos)
	assert.Equal(t, m.BinlogFile, ts.BinlogFile)
	assert.Equal(t, m.BinlogPos, ts.BinlogPos)
	assert.Equal(t, m.GTIDSet, ts.GTIDSet)
	assert.Equal(t, []manifest.SkippedTable{{Schema: "demo", Table: "plain_myisam", Engine: "MyISAM"}}, ts.Skipped)
	t.Logf("table sums of %d tables in %.3fs at %s:%d", len(ts.Tables), ts.Seconds, ts.BinlogFile, ts.BinlogPos)

	got, err := drill.TableSums(s.ctx, db, ts.Algorithm, drill.SkipTables(ts.Skipped))
	require.NoError(t, err)
	n, problems := drill.CompareSums(ts.Tables, got)
	assert.Greater(t, n, 1)
	assert.Empty(t, problems)
}
