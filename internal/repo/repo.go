// Package repo implements the repository layout and the backup catalog on top
// of a storage.Backend:
//
//	<instance>/backups/<backup-id>/manifest.json   written last: the backup exists
//	<instance>/backups/<backup-id>/chunks/...      the stored stream
//
// A backup directory without a manifest is a partial (interrupted or
// in-progress) upload; it is not listed as a backup.
package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
)

// ErrBackupNotFound is returned (wrapped) when a backup has no manifest.
var ErrBackupNotFound = errors.New("backup not found")

// notFoundError is a "backup not found" error with a precise message; it
// matches ErrBackupNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return ErrBackupNotFound }

// maxManifestSize bounds the size of a manifest read from the repository.
const maxManifestSize = manifest.MaxEncodedSize

// BackupsPrefix returns the prefix of all backups of an instance:
// "<instance>/backups/".
func BackupsPrefix(instance string) string {
	return instance + "/backups/"
}

// BackupPrefix returns the prefix of one backup's objects:
// "<instance>/backups/<backupID>/".
func BackupPrefix(instance, backupID string) string {
	return BackupsPrefix(instance) + backupID + "/"
}

// ManifestKey returns the key of a backup's manifest.
func ManifestKey(instance, backupID string) string {
	return BackupPrefix(instance, backupID) + manifest.FileName
}

// Repo is a Strata repository stored in a backend.
type Repo struct {
	b storage.Backend
}

// New returns the repository stored in b.
func New(b storage.Backend) *Repo {
	return &Repo{b: b}
}

// Backend returns the underlying backend.
func (r *Repo) Backend() storage.Backend { return r.b }

// String describes the repository's location for messages.
func (r *Repo) String() string { return r.b.String() }

// checkName validates an instance name or backup ID, which become path
// segments of keys.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00"):
		return fmt.Errorf("%s %q is invalid (must be a single path segment)", what, s)
	}
	return nil
}

func checkIDs(instance, backupID string) error {
	if err := checkName("instance", instance); err != nil {
		return err
	}
	return checkName("backup ID", backupID)
}

// WriteManifest encodes m and stores it at ManifestKey(m.Instance,
// m.BackupID). It must be the last write of a backup: its presence is what
// makes the backup exist. It fails (wrapping storage.ErrExists) if the
// backup already has a manifest.
func (r *Repo) WriteManifest(ctx context.Context, m *manifest.Manifest) error {
	data, err := manifest.Encode(m)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	key := ManifestKey(m.Instance, m.BackupID)
	if err := r.b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return fmt.Errorf("write manifest of backup %q of instance %q: the backup already has a manifest: %w", m.BackupID, m.Instance, err)
		}
		return fmt.Errorf("write manifest of backup %q of instance %q: %w", m.BackupID, m.Instance, err)
	}
	return nil
}

// ReadManifest reads and validates the manifest of a backup. A missing
// manifest gives an error wrapping ErrBackupNotFound.
func (r *Repo) ReadManifest(ctx context.Context, instance, backupID string) (*manifest.Manifest, error) {
	if err := checkIDs(instance, backupID); err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	key := ManifestKey(instance, backupID)
	rc, err := r.b.Get(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, &notFoundError{msg: fmt.Sprintf("backup %q of instance %q not found in %s", backupID, instance, r.b)}
		}
		return nil, fmt.Errorf("read manifest of backup %q of instance %q: %w", backupID, instance, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest of backup %q of instance %q: %w", backupID, instance, err)
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("read manifest %s in %s: %w: larger than %d bytes", key, r.b, manifest.ErrInvalid, maxManifestSize)
	}
	m, err := manifest.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s in %s: %w", key, r.b, err)
	}
	if m.Instance != instance || m.BackupID != backupID {
		return nil, fmt.Errorf("read manifest %s in %s: %w: it describes backup %q of instance %q",
			key, r.b, manifest.ErrInvalid, m.BackupID, m.Instance)
	}
	return m, nil
}

// scan lists an instance's backup directories: for each backup ID, whether
// it has a manifest. IDs are sorted.
func (r *Repo) scan(ctx context.Context, instance string) (ids []string, hasManifest map[string]bool, err error) {
	if err := checkName("instance", instance); err != nil {
		return nil, nil, err
	}
	prefix := BackupsPrefix(instance)
	objs, err := r.b.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	hasManifest = make(map[string]bool)
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, prefix)
		id, name, ok := strings.Cut(rest, "/")
		if !ok || id == "" {
			continue // stray object directly under backups/
		}
		if _, seen := hasManifest[id]; !seen {
			hasManifest[id] = false
			ids = append(ids, id)
		}
		if name == manifest.FileName {
			hasManifest[id] = true
		}
	}
	sort.Strings(ids)
	return ids, hasManifest, nil
}

// ListBackups returns the manifests of an instance's backups, sorted by start
// time then backup ID. Backup directories without a manifest (partial
// uploads) are ignored. A manifest that cannot be read or is invalid is an
// error (naming its object).
func (r *Repo) ListBackups(ctx context.Context, instance string) ([]*manifest.Manifest, error) {
	out, invalid, err := r.ReadManifests(ctx, instance)
	if err != nil {
		return nil, err
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("list backups of instance %q: %w", instance, invalid[0].Err)
	}
	return out, nil
}

// InvalidManifest is a manifest that exists but does not decode or
// validate.
type InvalidManifest struct {
	BackupID string
	Key      string
	Err      error // wraps manifest.ErrInvalid (or ErrNewerFormat) and names Key
}

// ReadManifests is ListBackups that returns the manifests that are invalid
// beside the valid ones instead of failing on the first: for verify, which
// reports each. An error is returned only when the repository cannot be
// listed or read.
func (r *Repo) ReadManifests(ctx context.Context, instance string) ([]*manifest.Manifest, []InvalidManifest, error) {
	ids, hasManifest, err := r.scan(ctx, instance)
	if err != nil {
		return nil, nil, fmt.Errorf("list backups of instance %q: %w", instance, err)
	}
	out := make([]*manifest.Manifest, 0, len(ids))
	var invalid []InvalidManifest
	for _, id := range ids {
		if !hasManifest[id] {
			continue
		}
		m, err := r.ReadManifest(ctx, instance, id)
		if err != nil {
			if errors.Is(err, ErrBackupNotFound) {
				continue // deleted since listed
			}
			if errors.Is(err, manifest.ErrInvalid) || errors.Is(err, manifest.ErrNewerFormat) || checkName("backup ID", id) != nil {
				invalid = append(invalid, InvalidManifest{BackupID: id, Key: BackupsPrefix(instance) + id + "/" + manifest.FileName, Err: err})
				continue
			}
			return nil, nil, fmt.Errorf("list backups of instance %q: %w", instance, err)
		}
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].BackupID < out[j].BackupID
	})
	return out, invalid, nil
}

// ListPartial returns the sorted IDs of an instance's backups that have
// objects but no manifest: interrupted (or still running) uploads.
func (r *Repo) ListPartial(ctx context.Context, instance string) ([]string, error) {
	ids, hasManifest, err := r.scan(ctx, instance)
	if err != nil {
		return nil, fmt.Errorf("list partial backups of instance %q: %w", instance, err)
	}
	out := make([]string, 0)
	for _, id := range ids {
		if !hasManifest[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// DeleteBackupData deletes every object of a backup except its manifest.
// Deleting a backup entirely is DeleteManifest (so that it stops being
// listed) followed by DeleteBackupData; a partial upload only needs
// DeleteBackupData.
func (r *Repo) DeleteBackupData(ctx context.Context, instance, backupID string) error {
	if err := checkIDs(instance, backupID); err != nil {
		return fmt.Errorf("delete backup data: %w", err)
	}
	prefix := BackupPrefix(instance, backupID)
	objs, err := r.b.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("delete data of backup %q of instance %q: %w", backupID, instance, err)
	}
	mkey := ManifestKey(instance, backupID)
	for _, o := range objs {
		if o.Key == mkey {
			continue
		}
		if err := r.b.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("delete data of backup %q of instance %q: %w", backupID, instance, err)
		}
	}
	return nil
}

// DeleteManifest deletes a backup's manifest, after which the backup is no
// longer listed (its remaining data is then a partial upload). Deleting a
// missing manifest is not an error.
func (r *Repo) DeleteManifest(ctx context.Context, instance, backupID string) error {
	if err := checkIDs(instance, backupID); err != nil {
		return fmt.Errorf("delete manifest: %w", err)
	}
	if err := r.b.Delete(ctx, ManifestKey(instance, backupID)); err != nil {
		return fmt.Errorf("delete manifest of backup %q of instance %q: %w", backupID, instance, err)
	}
	return nil
}
