package manifest_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
)

const (
	sumA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	sumB = "0000000000000000000000000000000000000000000000000000000000000001"
)

func sample() *manifest.Manifest {
	start := time.Date(2024, 5, 1, 2, 3, 4, 5000, time.UTC)
	return &manifest.Manifest{
		FormatVersion:    manifest.FormatVersion,
		BackupID:         "20240501T020304Z",
		Instance:         "db1",
		Type:             manifest.TypeIncremental,
		ParentID:         "20240430T020304Z",
		Tool:             "mariabackup",
		ToolVersion:      "10.11.6",
		ServerFlavor:     "mariadb",
		ServerVersion:    "10.11.6-MariaDB",
		StartTime:        start,
		EndTime:          start.Add(90 * time.Second),
		FromLSN:          100,
		ToLSN:            200,
		LastLSN:          210,
		BinlogFile:       "mysql-bin.000003",
		BinlogPos:        4567,
		GTIDSet:          "0-1-42",
		ConsistentAt:     start.Add(80 * time.Second),
		LockDuration:     manifest.Duration(1500 * time.Millisecond),
		Duration:         manifest.Duration(90 * time.Second),
		RawSize:          30,
		StoredSize:       20,
		RawSHA256:        sumA,
		Compression:      "zstd",
		CompressionLevel: 3,
		ChunkSize:        16 << 20,
		Chunks: []manifest.Chunk{
			{Index: 0, Key: "chunks/00000000.zst", RawSize: 16, StoredSize: 12, SHA256: sumA},
			{Index: 1, Key: "chunks/00000001.zst", RawSize: 14, StoredSize: 8, SHA256: sumB},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	m := sample()
	data, err := manifest.Encode(m)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(string(data), "}\n"))
	assert.Contains(t, string(data), "\n  \"format_version\": 4,\n", "indented JSON")
	assert.Contains(t, string(data), `"lock_duration": 1.5`)

	got, err := manifest.Decode(data)
	require.NoError(t, err)
	assert.Equal(t, m, got)
}

// A manifest with no chunks describes no backup (a backup stream is never
// empty): it is refused, as it would restore nothing.
func TestEmptyChunkListIsRefused(t *testing.T) {
	m := sample()
	m.Type = manifest.TypeFull
	m.ParentID = ""
	m.Chunks, m.RawSize, m.StoredSize = nil, 0, 0
	_, err := manifest.Encode(m)
	require.ErrorIs(t, err, manifest.ErrInvalid)
	assert.ErrorContains(t, err, "chunk list is empty")
	assert.Nil(t, m.Chunks, "Encode must not modify its argument")
	for _, chunks := range []string{`[]`, `null`} {
		data := `{"format_version": 1, "backup_id": "x", "instance": "i", "type": "full", "chunks": ` + chunks + `}`
		_, err = manifest.Decode([]byte(data))
		require.ErrorIs(t, err, manifest.ErrInvalid)
		assert.ErrorContains(t, err, "chunk list is empty")
	}
}

func TestEncodeValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(m *manifest.Manifest)
		want   string
	}{
		{"no format version", func(m *manifest.Manifest) { m.FormatVersion = 0 }, "format_version 0"},
		{"newer format version", func(m *manifest.Manifest) { m.FormatVersion = manifest.FormatVersion + 1 }, "is newer than"},
		{"no backup id", func(m *manifest.Manifest) { m.BackupID = "" }, "backup_id: is missing"},
		{"slash in backup id", func(m *manifest.Manifest) { m.BackupID = "a/b" }, "backup_id"},
		{"dotdot backup id", func(m *manifest.Manifest) { m.BackupID = ".." }, "backup_id"},
		{"no instance", func(m *manifest.Manifest) { m.Instance = "" }, "instance: is missing"},
		{"no type", func(m *manifest.Manifest) { m.Type = "" }, "type is missing"},
		{"bad type", func(m *manifest.Manifest) { m.Type = "weekly" }, `type "weekly" is invalid`},
		{"incremental without parent", func(m *manifest.Manifest) { m.ParentID = "" }, "parent_id is required"},
		{"differential without parent", func(m *manifest.Manifest) { m.Type = manifest.TypeDifferential; m.ParentID = "" }, "parent_id is required"},
		{"gap in chunk indexes", func(m *manifest.Manifest) { m.Chunks[1].Index = 2 }, "chunk 1 has index 2"},
		{"chunks out of order", func(m *manifest.Manifest) { m.Chunks[0].Index, m.Chunks[1].Index = 1, 0 }, "chunk 0 has index 1"},
		{"chunk not starting at 0", func(m *manifest.Manifest) { m.Chunks = m.Chunks[1:] }, "chunk 0 has index 1"},
		{"short sha256", func(m *manifest.Manifest) { m.Chunks[1].SHA256 = "abc" }, "chunk 1: sha256"},
		{"uppercase sha256", func(m *manifest.Manifest) { m.Chunks[0].SHA256 = strings.ToUpper(sumA) }, "chunk 0: sha256"},
		{"non-hex sha256", func(m *manifest.Manifest) { m.Chunks[0].SHA256 = strings.Repeat("g", 64) }, "chunk 0: sha256"},
		{"missing chunk key", func(m *manifest.Manifest) { m.Chunks[0].Key = "" }, "chunk 0: key is missing"},
		{"negative chunk size", func(m *manifest.Manifest) { m.Chunks[0].RawSize = -1 }, "chunk 0: raw_size -1 is out of range"},
		{"chunk larger than chunk_size", func(m *manifest.Manifest) { m.Chunks[0].RawSize = 16<<20 + 1 }, "chunk 0: raw_size"},
		{"huge stored size", func(m *manifest.Manifest) { m.Chunks[1].StoredSize = 1 << 40 }, "chunk 1: stored_size"},
		{"chunk_size too large", func(m *manifest.Manifest) { m.ChunkSize = 1 << 40 }, "chunk_size"},
		{"raw_size not the sum", func(m *manifest.Manifest) { m.RawSize = 31 }, "raw_size 31 is not the sum of the chunks' raw sizes (30)"},
		{"stored_size not the sum", func(m *manifest.Manifest) { m.StoredSize = 19 }, "stored_size 19 is not the sum of the chunks' stored sizes (20)"},
		{"uploaded+reused not stored", func(m *manifest.Manifest) { m.UploadedBytes, m.ReusedBytes = 5, 5 }, "uploaded_bytes"},
		{"chunk key traversal", func(m *manifest.Manifest) { m.Chunks[0].Key = "chunks/../../../other/backups/x/manifest.json" }, "chunk 0: key"},
		{"chunk key outside chunks/", func(m *manifest.Manifest) { m.Chunks[0].Key = "manifest.json" }, "not under chunks/"},
		{"chunk key absolute", func(m *manifest.Manifest) { m.Chunks[0].Key = "/etc/passwd" }, "not under chunks/"},
		{"chunk key dotdot", func(m *manifest.Manifest) { m.Chunks[0].Key = "chunks/.." }, "not a valid chunk name"},
		{"chunk key subdir", func(m *manifest.Manifest) { m.Chunks[0].Key = "chunks/a/b" }, "chunk 0: key"},
		{"chunk key NUL", func(m *manifest.Manifest) { m.Chunks[0].Key = "chunks/a\x00b" }, "chunk 0: key"},
		{"chunk key twice", func(m *manifest.Manifest) { m.Chunks[1].Key = m.Chunks[0].Key }, "listed twice"},
		{"bad raw sha256", func(m *manifest.Manifest) { m.RawSHA256 = "xyz" }, "raw_sha256"},
		{"negative size", func(m *manifest.Manifest) { m.StoredSize = -5 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := sample()
			tc.modify(m)
			_, err := manifest.Encode(m)
			require.Error(t, err)
			assert.ErrorIs(t, err, manifest.ErrInvalid)
			assert.ErrorContains(t, err, tc.want)

			// Decode applies the same validation (except the version check,
			// which has its own error).
			if m.FormatVersion <= manifest.FormatVersion {
				data, jerr := json.Marshal(m)
				require.NoError(t, jerr)
				_, err = manifest.Decode(data)
				assert.ErrorIs(t, err, manifest.ErrInvalid)
				assert.ErrorContains(t, err, tc.want)
			}
		})
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	m := sample()
	m.BackupID = ""
	m.Type = "bogus"
	m.Chunks[1].SHA256 = ""
	err := m.Validate()
	require.Error(t, err)
	for _, want := range []string{"backup_id", "type", "chunk 1: sha256"} {
		assert.ErrorContains(t, err, want)
	}
	assert.NoError(t, sample().Validate())
}

func TestEncodeNil(t *testing.T) {
	_, err := manifest.Encode(nil)
	assert.ErrorIs(t, err, manifest.ErrInvalid)
}

func TestDecodeNewerFormat(t *testing.T) {
	data := fmt.Sprintf(`{"format_version": %d, "backup_id": "x", "new_field": {"a": 1}, "chunks": "changed type"}`, manifest.FormatVersion+1)
	_, err := manifest.Decode([]byte(data))
	require.Error(t, err)
	assert.ErrorIs(t, err, manifest.ErrNewerFormat)
	assert.ErrorContains(t, err, "upgrade Strata")
	assert.ErrorContains(t, err, fmt.Sprintf("version %d", manifest.FormatVersion+1))
}

func TestDecodeErrors(t *testing.T) {
	for name, data := range map[string]string{
		"empty":             "",
		"blank":             "  \n",
		"not json":          "hello",
		"truncated":         `{"format_version": 1, "backup_id": "x"`,
		"no version":        `{"backup_id": "x", "instance": "i", "type": "full"}`,
		"zero version":      `{"format_version": 0, "backup_id": "x", "instance": "i", "type": "full"}`,
		"wrong field type":  `{"format_version": 1, "backup_id": 5, "instance": "i", "type": "full"}`,
		"version as string": `{"format_version": "1", "backup_id": "x", "instance": "i", "type": "full"}`,
		"array":             `[]`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := manifest.Decode([]byte(data))
			require.Error(t, err)
			assert.ErrorIs(t, err, manifest.ErrInvalid)
			assert.ErrorContains(t, err, "decode manifest")
		})
	}
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	// Same-version manifests may gain optional fields.
	data := `{"format_version": 1, "backup_id": "x", "instance": "i", "type": "full", "future": true, "raw_size": 1, "stored_size": 1,
		"chunks": [{"index": 0, "key": "chunks/00000000", "raw_size": 1, "stored_size": 1, "sha256": "` + sumA + `"}]}`
	m, err := manifest.Decode([]byte(data))
	require.NoError(t, err)
	assert.Equal(t, "x", m.BackupID)
}

func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		json string
	}{
		{0, "0"},
		{1500 * time.Millisecond, "1.5"},
		{90 * time.Second, "90"},
		{time.Microsecond, "0.000001"},
		{2 * time.Hour, "7200"},
		{1001 * time.Millisecond, "1.001"}, // float64 truncation would give 1.000999999s
		{1234567891 * time.Nanosecond, "1.234567891"},
	} {
		data, err := json.Marshal(manifest.Duration(tc.d))
		require.NoError(t, err)
		assert.Equal(t, tc.json, string(data))

		var got manifest.Duration
		require.NoError(t, json.Unmarshal(data, &got))
		assert.Equal(t, tc.d, got.Std())
	}

	var d manifest.Duration
	require.NoError(t, json.Unmarshal([]byte("2.25"), &d))
	assert.Equal(t, 2250*time.Millisecond, d.Std())
	err := json.Unmarshal([]byte(`"2s"`), &d)
	require.Error(t, err)
	assert.ErrorContains(t, err, "duration")

	// Inside a struct.
	var s struct {
		D manifest.Duration `json:"d"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"d": 0.5}`), &s))
	assert.Equal(t, 500*time.Millisecond, s.D.Std())
}

func TestIsSHA256Hex(t *testing.T) {
	assert.True(t, manifest.IsSHA256Hex(sumA))
	assert.False(t, manifest.IsSHA256Hex(""))
	assert.False(t, manifest.IsSHA256Hex(sumA[:63]))
	assert.False(t, manifest.IsSHA256Hex(sumA+"0"))
	assert.False(t, manifest.IsSHA256Hex(strings.ToUpper(sumA)))
}

func TestMinFormatVersion(t *testing.T) {
	m := &manifest.Manifest{Compression: "zstd"}
	assert.Equal(t, 1, m.MinFormatVersion())
	m.TableSums = &manifest.TableSums{}
	assert.Equal(t, manifest.FormatVersionTableSums, m.MinFormatVersion(), "MD5 sums")
	m.TableSums.Algorithm = manifest.SumsChecksumTable
	assert.Equal(t, manifest.FormatVersionSumsAlgorithm, m.MinFormatVersion())
	m = &manifest.Manifest{Compression: "lz4"}
	assert.Equal(t, manifest.FormatVersionLZ4, m.MinFormatVersion(), "an older Strata would fail at the first chunk")
	assert.LessOrEqual(t, m.MinFormatVersion(), manifest.FormatVersion)
}
