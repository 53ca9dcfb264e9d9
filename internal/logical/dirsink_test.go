package logical

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestDirSinkSource(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sink := &DirSink{Dir: dir}
	files := []*File{{Name: "a%20b/t.00000.sql"}, {Name: "@users.sql"}, {Name: "a%20b/t.table.sql"}}
	data := [][]byte{[]byte("one\n"), []byte("two two\n"), {}}
	for i, f := range files {
		sum := sha256.Sum256(data[i])
		f.Size, f.SHA256 = int64(len(data[i])), hex.EncodeToString(sum[:])
		if err := sink.Put(ctx, f, data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if files[0].Offset != 0 || files[1].Offset != 4 || files[2].Offset != 12 {
		t.Fatalf("offsets %d %d %d", files[0].Offset, files[1].Offset, files[2].Offset)
	}
	src := DirSource{Dir: dir}
	for i, f := range files {
		r, err := src.Open(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(b) != string(data[i]) {
			t.Fatalf("%s: %q, %v", f.Name, b, err)
		}
	}

	// A changed byte, a truncated file and a longer file are corrupt.
	p := filepath.Join(dir, "a%20b", "t.00000.sql")
	for _, bad := range []string{"onE\n", "one", "one\nmore"} {
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := src.Open(ctx, files[0])
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		r.Close()
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%q: err %v, want ErrCorrupt", bad, err)
		}
	}

	// Names that leave the directory are refused.
	for _, n := range []string{"../x", "/etc/passwd", "a/../../x", "", "a//b"} {
		if err := sink.Put(ctx, &File{Name: n}, nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Put %q: %v", n, err)
		}
		if _, err := src.Open(ctx, &File{Name: n}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open %q: %v", n, err)
		}
	}
}
