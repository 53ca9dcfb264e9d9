// Package backend opens the repository storage named in the configuration.
package backend

import (
	"context"
	"fmt"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/local"
)

// Open returns the storage backend for cfg.
func Open(_ context.Context, cfg config.Storage) (storage.Backend, error) {
	switch cfg.Type {
	case "local":
		b, err := local.New(cfg.Local.Root)
		if err != nil {
			return nil, fmt.Errorf("open local repository (storage.local.root): %w", err)
		}
		return b, nil
	case "gcs":
		return nil, fmt.Errorf("storage.type gcs is not available in this build yet; use local")
	}
	return nil, fmt.Errorf("storage.type %q is not supported; use local or gcs", cfg.Type)
}
