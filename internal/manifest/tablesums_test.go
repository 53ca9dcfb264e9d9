package manifest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
)

func withSums() *manifest.Manifest {
	m := sample()
	m.TableSums = &manifest.TableSums{BinlogFile: "mysql-bin.000003", BinlogPos: 4567, GTIDSet: "0-1-42",
		At: time.Date(2024, 5, 1, 2, 4, 24, 0, time.UTC), AtBackupPoint: true, Seconds: 1.25,
		Tables:  []manifest.TableSum{{Schema: "app", Table: "t`1", Rows: 3, Checksum: "123456789012345678901"}},
		Skipped: []manifest.SkippedTable{{Schema: "app", Table: "m", Engine: "MyISAM"}}}
	m.FormatVersion = m.MinFormatVersion()
	return m
}

func TestTableSumsRoundTrip(t *testing.T) {
	m := withSums()
	assert.Equal(t, manifest.FormatVersionTableSums, m.FormatVersion)
	data, err := manifest.Encode(m)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"at_backup_point": true`)
	got, err := manifest.Decode(data)
	require.NoError(t, err)
	assert.Equal(t, m, got)

	// Without sums the manifest stays format 1, which older versions read.
	plain := sample()
	assert.Equal(t, 1, plain.MinFormatVersion())
	plain.FormatVersion = plain.MinFormatVersion()
	data, err = manifest.Encode(plain)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "table_sums")
}

// An older reader drops a field it does not know, so its MAC check would
// fail: sums in a format 1 manifest are refused rather than mistaken.
func TestTableSumsNeedFormat2(t *testing.T) {
	m := withSums()
	m.FormatVersion = 1
	_, err := manifest.Encode(m)
	require.ErrorIs(t, err, manifest.ErrInvalid)
	assert.Contains(t, err.Error(), "table_sums needs format_version 2")
}

func TestTableSumsValidated(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(*manifest.TableSums)
		want string
	}{
		"negative rows":    {func(s *manifest.TableSums) { s.Tables[0].Rows = -1 }, "rows -1"},
		"no checksum":      {func(s *manifest.TableSums) { s.Tables[0].Checksum = "" }, "no checksum"},
		"no table name":    {func(s *manifest.TableSums) { s.Tables[0].Table = "" }, "no schema or table name"},
		"negative seconds": {func(s *manifest.TableSums) { s.Seconds = -1 }, "seconds"},
		"too many tables":  {func(s *manifest.TableSums) { s.Skipped = make([]manifest.SkippedTable, manifest.MaxTables) }, "more than"},
	} {
		t.Run(name, func(t *testing.T) {
			m := withSums()
			c.edit(m.TableSums)
			_, err := manifest.Encode(m)
			require.ErrorIs(t, err, manifest.ErrInvalid)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

// The MAC covers the sums: AuthBytes changes with any of their values.
func TestAuthBytesCoverTableSums(t *testing.T) {
	base, err := withSums().AuthBytes()
	require.NoError(t, err)
	for name, edit := range map[string]func(*manifest.TableSums){
		"checksum":        func(s *manifest.TableSums) { s.Tables[0].Checksum = "1" },
		"rows":            func(s *manifest.TableSums) { s.Tables[0].Rows = 4 },
		"at backup point": func(s *manifest.TableSums) { s.AtBackupPoint = false },
		"position":        func(s *manifest.TableSums) { s.BinlogPos = 1 },
		"skipped":         func(s *manifest.TableSums) { s.Skipped = nil },
	} {
		m := withSums()
		edit(m.TableSums)
		b, err := m.AuthBytes()
		require.NoError(t, err)
		assert.NotEqual(t, string(base), string(b), name)
	}
	assert.True(t, strings.Contains(string(base), `"table_sums"`))
}

// A manifest written before table sums existed still decodes.
func TestOldManifestWithoutTableSumsDecodes(t *testing.T) {
	data := `{"format_version": 1, "backup_id": "x", "instance": "i", "type": "full", "raw_size": 1, "stored_size": 1,
		"chunks": [{"index": 0, "key": "chunks/a", "raw_size": 1, "stored_size": 1, "sha256": "` + strings.Repeat("a", 64) + `"}]}`
	m, err := manifest.Decode([]byte(data))
	require.NoError(t, err)
	assert.Nil(t, m.TableSums)
}
