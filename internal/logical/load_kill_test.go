package logical

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
)

// TestLoadKill9 runs a load in a child process, kills it with SIGKILL
// while a MyISAM file is half loaded and an InnoDB table is loading on the
// other connection, and loads again with the same LoadID here: every table
// is exactly its reference, no row twice.
func TestLoadKill9(t *testing.T) {
	srv, db := startServer(t, flavor.MariaDB)
	fx := shopFixture(t, db, flavor.MariaDB)
	dir := t.TempDir()
	for name, data := range fx.files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := json.Marshal(fx.idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	const block = "shop/myi.00001.sql"
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), "STRATA_LOAD_CHILD_DIR="+dir, "STRATA_LOAD_CHILD_DSN="+srv.DSN(""), "STRATA_LOAD_CHILD_BLOCK="+block)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan bool, 1)
	var childOut strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			childOut.WriteString(sc.Text() + "\n")
			if sc.Text() == "BLOCKED" {
				blocked <- true
			}
		}
		close(blocked)
	}()
	select {
	case ok := <-blocked:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("the child ended without blocking:\n%s", childOut.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("the child never reached the file")
	}
	if n := scalar[int](t, db, "SELECT COUNT(*) FROM shop.myi WHERE id > 200 AND id <= 400"); n == 0 {
		t.Fatal("no partial rows of the MyISAM file: the kill comes too early")
	}
	time.Sleep(50 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	res, err := Load(withTimeout(t), db, &fx.idx, fx.source(), LoadOptions{Parallelism: 2, DeferIndexes: true, LoadID: "kill9"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range shopTables(flavor.MariaDB) {
		sameAsRef(t, db, "shop", ts.name, ts.name)
	}
	if res.SkippedFiles == 0 {
		t.Errorf("nothing was skipped: %+v", res)
	}
	t.Logf("resumed: %+v", res)
}

// TestLoadKillChild is the child process of TestLoadKill9 (it does nothing
// in a normal run).
func TestLoadKillChild(t *testing.T) {
	dir := os.Getenv("STRATA_LOAD_CHILD_DIR")
	if dir == "" {
		t.Skip("the child of TestLoadKill9")
	}
	var idx Index
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	src := &memSource{files: map[string][]byte{}}
	for _, f := range idx.Files {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Name)))
		if err != nil {
			t.Fatal(err)
		}
		src.files[f.Name] = data
	}
	forever := make(chan string, 1)
	src.wrap = func(_ context.Context, f *File, r io.Reader) io.Reader {
		if f.Name != os.Getenv("STRATA_LOAD_CHILD_BLOCK") {
			return r
		}
		return &blockingReader{ctx: context.Background(), r: r, half: int(f.Size / 2), blocked: forever, name: f.Name}
	}
	go func() {
		<-forever
		os.Stdout.WriteString("BLOCKED\n")
	}()
	db, err := sql.Open("mysql", os.Getenv("STRATA_LOAD_CHILD_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(context.Background(), db, &idx, src, LoadOptions{Parallelism: 2, DeferIndexes: true, LoadID: "kill9"})
	t.Fatalf("the load ended (it should have been killed): %v", err)
}
