// Package backend opens the repository storage named in the configuration.
package backend

import (
	"context"
	"fmt"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/gcs"
	"github.com/strata-backup/strata/internal/storage/local"
)

// Open returns the storage backend for cfg. Its requests, failures and
// retries are counted in the strata_storage_* metrics, labelled with
// backend=cfg.Type.
func Open(ctx context.Context, cfg config.Storage) (storage.Backend, error) {
	switch cfg.Type {
	case "local":
		b, err := local.New(cfg.Local.Root)
		if err != nil {
			return nil, fmt.Errorf("open local repository (storage.local.root): %w", err)
		}
		b.OnRetry(metrics.RetryHook(cfg.Type))
		return metrics.Storage(b, cfg.Type), nil
	case "gcs":
		b, err := gcs.New(ctx, gcs.Options{
			Bucket:          cfg.GCS.Bucket,
			Prefix:          cfg.GCS.Prefix,
			CredentialsFile: cfg.GCS.CredentialsFile,
			OnRetry:         metrics.RetryHook(cfg.Type),
		})
		if err != nil {
			return nil, fmt.Errorf("open gcs repository (storage.gcs.bucket, storage.gcs.prefix, "+
				"storage.gcs.credentials_file): %w", err)
		}
		return metrics.Storage(b, cfg.Type), nil
	}
	return nil, fmt.Errorf("storage.type %q is not supported; use local or gcs", cfg.Type)
}
