package repo

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
)

// Manifests of encrypted backups are authenticated. The backup writes, just
// before the manifest, MAC = HMAC-SHA256(AuthKey(data key, "manifest"),
// manifest.AuthBytes()). The data key is stored only wrapped by a key
// encryption key, so a writer of the bucket without a key encryption key
// cannot compute the MAC of a manifest it plants or alters. Rotating the key
// encryption key re-wraps the data key and leaves it, and so every MAC,
// unchanged: manifests are never rewritten.

// ErrManifestNotAuthentic matches a manifest whose MAC does not match its
// content under the backup's data key: it was altered, or planted, by
// someone without the key.
var ErrManifestNotAuthentic = errors.New("manifest is not authentic")

// ErrManifestNoMAC matches the manifest of an encrypted backup that carries
// no MAC: written before Strata authenticated manifests, or stripped.
var ErrManifestNoMAC = errors.New("manifest carries no MAC")

const manifestPurpose = "manifest"

// SealManifest sets m.MAC, from the backup's data key. It must be the last
// change to m before WriteManifest.
func SealManifest(m *manifest.Manifest, dataKey []byte) error {
	b, err := m.AuthBytes()
	if err != nil {
		return err
	}
	m.MAC = hex.EncodeToString(crypt.MAC(crypt.AuthKey(dataKey, manifestPurpose), b))
	return nil
}

// CheckManifestMAC checks m's MAC with the backup's data key. The error
// names the manifest's object and matches ErrManifestNoMAC or
// ErrManifestNotAuthentic.
func CheckManifestMAC(m *manifest.Manifest, dataKey []byte) error {
	key := ManifestKey(m.Instance, m.BackupID)
	if m.MAC == "" {
		return fmt.Errorf("%w: %s describes an encrypted backup but carries no MAC: it was written by a Strata older than manifest authentication, or altered",
			ErrManifestNoMAC, key)
	}
	b, err := m.AuthBytes()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrManifestNotAuthentic, key, err)
	}
	mac, err := hex.DecodeString(m.MAC)
	if err != nil || !crypt.CheckMAC(crypt.AuthKey(dataKey, manifestPurpose), b, mac) {
		return fmt.Errorf("%w: the MAC of %s does not match its content under the backup's data key: the manifest was altered or planted by someone without the encryption key; do not restore it",
			ErrManifestNotAuthentic, key)
	}
	return nil
}

// AuthenticateManifest unwraps the data key of encrypted backup m with ring
// and checks m's MAC with it; it returns the data key. An unwrap failure is
// returned as KeySet.Unwrap returns it.
func (r *Repo) AuthenticateManifest(ctx context.Context, m *manifest.Manifest, ring *crypt.Keyring) ([]byte, error) {
	if !m.Encrypted {
		return nil, fmt.Errorf("authenticate %s: the backup is not encrypted, so it has no key to authenticate its manifest with", ManifestKey(m.Instance, m.BackupID))
	}
	dk, _, err := r.BackupKeys(m.Instance, m.BackupID).Unwrap(ctx, ring)
	if err != nil {
		return nil, err
	}
	return dk, CheckManifestMAC(m, dk)
}
