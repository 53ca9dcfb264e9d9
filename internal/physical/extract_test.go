package physical

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func mbstreamTool(t *testing.T) *Tool {
	t.Helper()
	tool, err := ForFlavor("mariadb", Paths{})
	if err != nil {
		t.Skip(err)
	}
	return tool
}

// A stream written through Extract's pipe in large writes is extracted
// whole with --parallel, file by file.
func TestExtractWithParallelWritesEveryFile(t *testing.T) {
	tool := mbstreamTool(t)
	src := t.TempDir()
	want := map[string][]byte{}
	for i, size := range []int{0, 1, 3 << 20, 5<<20 + 7} {
		name := filepath.Join("d", string(rune('a'+i))+".ibd")
		data := bytes.Repeat([]byte{byte(i + 1), 2, 3}, size/3+1)[:size]
		if err := os.MkdirAll(filepath.Join(src, "d"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		want[name] = data
	}
	cmd := exec.Command(tool.Stream, "-c", "d/a.ibd", "d/b.ibd", "d/c.ibd", "d/d.ibd")
	cmd.Dir = src
	stream, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, wait, err := tool.Extract(context.Background(), dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(stream); err != nil { // one write of several MiB
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes extracted (%v), want %d", name, len(got), err, len(data))
		}
	}
}

// A cancelled extraction kills the extractor: the writer's next write
// fails instead of blocking, and wait reports it.
func TestExtractCancelledStopsTheWriter(t *testing.T) {
	tool := mbstreamTool(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, wait, err := tool.Extract(ctx, t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4<<20)
		for {
			if _, err := w.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded after cancel")
		}
	case <-time.After(time.Minute):
		t.Fatal("the writer still blocks a minute after the extraction was cancelled")
	}
	_ = w.Close()
	if err := wait(); err == nil {
		t.Fatal("wait reports no error for a killed extractor")
	}
}
