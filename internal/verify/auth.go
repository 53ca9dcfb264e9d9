package verify

import (
	"context"
	"errors"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
)

// Option changes what Backups checks.
type Option func(*options)

type options struct {
	keys             *crypt.Keyring
	requireEncrypted bool
}

// WithKeys makes Backups authenticate the manifest of every encrypted
// backup with its data key, unwrapped with ring: a manifest altered or
// planted without the key, or one carrying no MAC, is a problem.
func WithKeys(ring *crypt.Keyring) Option {
	return func(o *options) { o.keys = ring }
}

// RequireEncrypted, for an instance with encryption enabled, makes every
// backup that is not encrypted a problem, as a restore refuses it: old data
// from before encryption was enabled, or a backup planted by a writer of the
// bucket. With allowUnencrypted (the restore's --allow-unencrypted) such
// backups are accepted, as the restore would accept them.
func RequireEncrypted(encryptionEnabled, allowUnencrypted bool) Option {
	return func(o *options) { o.requireEncrypted = encryptionEnabled && !allowUnencrypted }
}

// checkEncrypted reports a backup that is not encrypted when o requires
// encryption.
func checkEncrypted(o options, m *manifest.Manifest) []Problem {
	if !o.requireEncrypted || m.Encrypted {
		return nil
	}
	return []Problem{{BackupID: m.BackupID, Chunk: -1, Key: repo.ManifestKey(m.Instance, m.BackupID),
		What: "the backup is not encrypted, but the instance has encryption enabled: a restore refuses it (old data restores with --allow-unencrypted; otherwise it may have been planted)"}}
}

// checkAuth checks the MAC of an encrypted backup's manifest.
func checkAuth(ctx context.Context, rp *repo.Repo, m *manifest.Manifest, ring *crypt.Keyring) []Problem {
	if !m.Encrypted {
		return nil
	}
	_, err := rp.AuthenticateManifest(ctx, m, ring)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, repo.ErrManifestNotAuthentic), errors.Is(err, repo.ErrManifestNoMAC):
	case ctx.Err() != nil:
		return nil // the caller reports the cancellation
	default:
		err = errors.New("the manifest cannot be authenticated: " + err.Error())
	}
	return []Problem{{BackupID: m.BackupID, Chunk: -1, Key: repo.ManifestKey(m.Instance, m.BackupID), What: err.Error()}}
}
