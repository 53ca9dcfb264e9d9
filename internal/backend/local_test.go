package backend

import (
	"context"
	"testing"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// The agent's local repository, behind the metrics wrapper, is seen as
// local files (a restore keeps no copies of its chunks); other backends
// are not.
func TestOpenedLocalRepositoryIsLocalFiles(t *testing.T) {
	var cfg config.Storage
	cfg.Type = "local"
	cfg.Local.Root = t.TempDir()
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !storage.IsLocal(b) {
		t.Errorf("%s is not seen as local files", b)
	}
	if storage.IsLocal(memory.New()) {
		t.Error("the memory backend is seen as local files")
	}
}
