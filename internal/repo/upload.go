package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
)

// ErrIncompleteUpload matches (with errors.Is) CheckUploaded's report that
// an object a manifest would name is not stored: something (a cleanup of
// partial uploads, a manual deletion) removed it during the upload. The
// upload must be done again; retrying the backup does that.
var ErrIncompleteUpload = errors.New("upload is incomplete")

// CheckUploaded checks, before m is written, that every object it names is
// stored: each chunk, and the backup's key material (for an encrypted
// backup the data key wrapped by m.EncryptionKeyID, otherwise the salt that
// named its chunks). A missing object gives an error wrapping
// ErrIncompleteUpload that names it; a failure to look is returned as is.
func (r *Repo) CheckUploaded(ctx context.Context, m *manifest.Manifest) error {
	if err := checkIDs(m.Instance, m.BackupID); err != nil {
		return fmt.Errorf("check upload: %w", err)
	}
	prefix := BackupPrefix(m.Instance, m.BackupID)
	keys := make([]string, 0, len(m.Chunks)+1)
	if m.Encrypted {
		if m.EncryptionKeyID == "" {
			return fmt.Errorf("check upload of backup %q of instance %q: encrypted without an encryption key id", m.BackupID, m.Instance)
		}
		keys = append(keys, BackupKeysPrefix(m.Instance, m.BackupID)+KeyObjectName(m.EncryptionKeyID))
	} else {
		keys = append(keys, SaltKey(m.Instance, m.BackupID))
	}
	for _, c := range m.Chunks {
		keys = append(keys, prefix+c.Key)
	}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := r.b.Stat(ctx, k); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("backup %q of instance %q: %w: %s is gone (removed while the backup was uploading); the upload must be done again",
					m.BackupID, m.Instance, ErrIncompleteUpload, k)
			}
			return fmt.Errorf("check upload of backup %q of instance %q: %w", m.BackupID, m.Instance, err)
		}
	}
	return nil
}

// DiscardUpload deletes a partial upload's chunks and key material but
// keeps its lease (and a manifest, which a partial upload does not have):
// the backup that holds the lease starts its upload afresh.
func (r *Repo) DiscardUpload(ctx context.Context, instance, backupID string) error {
	if err := checkIDs(instance, backupID); err != nil {
		return fmt.Errorf("discard upload: %w", err)
	}
	objs, err := r.b.List(ctx, BackupPrefix(instance, backupID))
	if err != nil {
		return fmt.Errorf("discard upload of backup %q of instance %q: %w", backupID, instance, err)
	}
	mkey := ManifestKey(instance, backupID)
	for _, o := range objs {
		if o.Key == mkey || IsLeaseKey(instance, backupID, o.Key) {
			continue
		}
		if err := r.b.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("discard upload of backup %q of instance %q: %w", backupID, instance, err)
		}
	}
	return nil
}
