package manifest_test

import (
	"path"
	"strings"
	"testing"

	"github.com/strata-backup/strata/internal/manifest"
)

// FuzzDecode feeds arbitrary bytes to the manifest decoder: it never
// panics, and a manifest it accepts names only objects inside its backup's
// chunks/ directory, with sizes that are bounded and add up.
func FuzzDecode(f *testing.F) {
	good, err := manifest.Encode(sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2]) // truncated
	f.Add([]byte(strings.Replace(string(good), `"chunks/00000000.zst"`, `"chunks/../../../x/manifest.json"`, 1)))
	f.Add([]byte(strings.Replace(string(good), `"raw_size": 30`, `"raw_size": 31`, 1)))
	f.Add([]byte(strings.Replace(string(good), `"raw_size": 16`, `"raw_size": 1099511627776`, 1)))
	f.Add([]byte(`{"format_version": 1, "backup_id": "x", "instance": "i", "type": "full", "chunks": []}`))
	f.Add([]byte(`{"format_version": 99}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := manifest.Decode(data)
		if err != nil {
			return
		}
		if len(m.Chunks) == 0 {
			t.Fatal("accepted a manifest without chunks")
		}
		var raw, stored int64
		for i, c := range m.Chunks {
			if p := path.Join("db1/backups/b1", c.Key); path.Dir(p) != "db1/backups/b1/chunks" || strings.ContainsAny(c.Key, "\\\x00") {
				t.Fatalf("chunk %d: accepted key %q outside chunks/: %s", i, c.Key, p)
			}
			if c.RawSize < 1 || c.RawSize > manifest.MaxChunkSize || c.StoredSize < 1 || c.StoredSize > manifest.MaxStoredSize(c.RawSize) {
				t.Fatalf("chunk %d: accepted sizes raw %d stored %d", i, c.RawSize, c.StoredSize)
			}
			raw += c.RawSize
			stored += c.StoredSize
		}
		if raw != m.RawSize || stored != m.StoredSize {
			t.Fatalf("accepted sizes %d/%d that are not the chunks' sums %d/%d", m.RawSize, m.StoredSize, raw, stored)
		}
		for _, id := range []string{m.BackupID, m.Instance, m.ParentID} {
			if strings.ContainsAny(id, "/\\\x00") || id == ".." || id == "." {
				t.Fatalf("accepted id %q", id)
			}
		}
		// What is accepted encodes and decodes again.
		b, err := manifest.Encode(m)
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		if _, err := manifest.Decode(b); err != nil {
			t.Fatalf("accepted manifest, encoded again, is refused: %v", err)
		}
	})
}
