package manifest_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/logical"
	"github.com/strata-backup/strata/internal/manifest"
)

func logicalSample() *manifest.Manifest {
	m := sample()
	m.Type, m.ParentID, m.Tool = manifest.TypeLogical, "", manifest.ToolLogical
	m.FromLSN, m.ToLSN, m.LastLSN = 0, 0, 0
	m.FormatVersion = manifest.FormatVersionLogical
	sum := strings.Repeat("ab", 32)
	m.Logical = &logical.Index{Format: logical.FormatVersion, Files: []logical.File{
		{Name: "shop/@schema.sql", Kind: logical.KindDatabase, Schema: "shop", Offset: 0, Size: 10, SHA256: sum},
		{Name: "shop/orders.table.sql", Kind: logical.KindTable, Schema: "shop", Object: "orders", Offset: 10, Size: 5, SHA256: sum,
			Table: &logical.TableMeta{Engine: "InnoDB", Columns: []string{"id"}, PrimaryKey: []string{"id"}, Parts: 1, Rows: 3}},
		{Name: "shop/orders.00000.sql", Kind: logical.KindData, Schema: "shop", Object: "orders", Offset: 15, Size: 15, SHA256: sum, Rows: 3},
	}}
	return m
}

func TestLogicalManifestValidates(t *testing.T) {
	m := logicalSample()
	require.NoError(t, m.Validate())
	require.Equal(t, manifest.FormatVersionLogical, m.MinFormatVersion())
	data, err := manifest.Encode(m)
	require.NoError(t, err)
	got, err := manifest.Decode(data)
	require.NoError(t, err)
	require.Equal(t, m.Logical, got.Logical)
}

// A logical index is untrusted input like the rest of the manifest: file
// names that climb out of a directory, files that overlap or leave a hole
// in the stream, a data file without its table, a logical index on a
// physical backup, and a logical backup in an older format are refused.
func TestLogicalManifestRefusesHostileIndexes(t *testing.T) {
	for name, mutate := range map[string]func(m *manifest.Manifest){
		"climbing name":      func(m *manifest.Manifest) { m.Logical.Files[2].Name = "../../etc/passwd" },
		"absolute name":      func(m *manifest.Manifest) { m.Logical.Files[2].Name = "/etc/passwd" },
		"dot segment":        func(m *manifest.Manifest) { m.Logical.Files[2].Name = "shop/.." },
		"three segments":     func(m *manifest.Manifest) { m.Logical.Files[2].Name = "a/b/c" },
		"odd byte":           func(m *manifest.Manifest) { m.Logical.Files[2].Name = "shop/a b.sql" },
		"duplicate name":     func(m *manifest.Manifest) { m.Logical.Files[2].Name = m.Logical.Files[1].Name },
		"overlap":            func(m *manifest.Manifest) { m.Logical.Files[2].Offset = 14; m.Logical.Files[2].Size = 16 },
		"hole":               func(m *manifest.Manifest) { m.Logical.Files[2].Offset = 16; m.Logical.Files[2].Size = 14 },
		"beyond the stream":  func(m *manifest.Manifest) { m.Logical.Files[2].Size = 16 },
		"short of stream":    func(m *manifest.Manifest) { m.Logical.Files[2].Size = 14 },
		"unknown kind":       func(m *manifest.Manifest) { m.Logical.Files[0].Kind = "script" },
		"bad sha":            func(m *manifest.Manifest) { m.Logical.Files[0].SHA256 = "xyz" },
		"orphan data":        func(m *manifest.Manifest) { m.Logical.Files[2].Object = "other" },
		"part beyond parts":  func(m *manifest.Manifest) { m.Logical.Files[2].Part = 1 },
		"missing part":       func(m *manifest.Manifest) { m.Logical.Files[1].Table.Parts = 2 },
		"table without meta": func(m *manifest.Manifest) { m.Logical.Files[1].Table = nil },
		"table twice": func(m *manifest.Manifest) {
			f := m.Logical.Files[1]
			f.Name, f.Offset, f.Size = "shop/orders2.table.sql", 30, 0
			m.Logical.Files = append(m.Logical.Files, f)
		},
		"newer dump format": func(m *manifest.Manifest) { m.Logical.Format = logical.FormatVersion + 1 },
		"no index":          func(m *manifest.Manifest) { m.Logical = nil },
		"with a parent":     func(m *manifest.Manifest) { m.ParentID = "20240430T020304Z" },
		"older format":      func(m *manifest.Manifest) { m.FormatVersion = 3 },
		"index on a full":   func(m *manifest.Manifest) { m.Type = manifest.TypeFull },
	} {
		t.Run(name, func(t *testing.T) {
			m := logicalSample()
			mutate(m)
			err := m.Validate()
			require.ErrorIs(t, err, manifest.ErrInvalid)
		})
	}
}
