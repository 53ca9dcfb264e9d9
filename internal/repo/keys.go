package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
)

// Key material in the repository:
//
//	<instance>/backups/<backup-id>/keys/<kek-id>.json    the backup's data key, wrapped by one KEK
//	<instance>/backups/<backup-id>/salt.json             names the chunks of an unencrypted backup
//	<instance>/binlogs/keys/<key-ref>/<kek-id>.json      the data key of one binlog archive run
//
// A data key has one object per key encryption key (KEK) that wraps it:
// the KEK of the agent that created it, plus one per `strata key rotate`.
// Objects are immutable, so a rotation adds the new wrapping before it
// (optionally) deletes the old ones, and a crash in between leaves both.

// ErrNoUsableKey matches (with errors.Is) the failure to unwrap a data key
// because no key encryption key at hand wraps it: the message names the
// KEK ids the repository has and those the agent has.
var ErrNoUsableKey = errors.New("no usable encryption key")

// maxKeyObjectSize bounds a key object read from the repository.
const maxKeyObjectSize = 64 << 10

// KeyObject is one wrapped form of a data key, stored as JSON.
type KeyObject struct {
	// KEKID is the ID of the key encryption key that wrapped the data key.
	KEKID string `json:"kek_id"`
	// Wrapped is the wrapped data key (base64 in JSON).
	Wrapped []byte `json:"wrapped"`
	// Created is when this wrapping was stored.
	Created time.Time `json:"created"`
}

// KeySet is where the wrapped forms of one data key are stored: one object
// per key encryption key, under Prefix.
type KeySet struct {
	B storage.Backend
	// Prefix ends with '/': "<instance>/backups/<id>/keys/".
	Prefix string
	// What names the owner of the key for messages, e.g. `backup "b1" of
	// instance "db1"`.
	What string
}

// BackupKeysPrefix returns the prefix of a backup's key objects:
// "<instance>/backups/<backupID>/keys/".
func BackupKeysPrefix(instance, backupID string) string {
	return BackupPrefix(instance, backupID) + "keys/"
}

// BinlogKeysPrefix returns the prefix of all key objects of an instance's
// binlog archive: "<instance>/binlogs/keys/".
func BinlogKeysPrefix(instance string) string { return instance + "/binlogs/keys/" }

// BackupKeys returns the key set of a backup.
func (r *Repo) BackupKeys(instance, backupID string) KeySet {
	return KeySet{B: r.b, Prefix: BackupKeysPrefix(instance, backupID),
		What: fmt.Sprintf("backup %q of instance %q", backupID, instance)}
}

// BinlogKeys returns the key set of one binlog archive run's data key.
func BinlogKeys(b storage.Backend, instance, keyRef string) KeySet {
	return KeySet{B: b, Prefix: BinlogKeysPrefix(instance) + keyRef + "/",
		What: fmt.Sprintf("binlog key %q of instance %q", keyRef, instance)}
}

// KeyObjectName returns the object name of the wrapping by KEK kekID: the ID
// with every character other than letters, digits, '.', '_', '-' and ':'
// replaced by '_', and ".json". The object itself records the exact ID.
func KeyObjectName(kekID string) string {
	var b strings.Builder
	for _, c := range kekID {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == ':':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" || name == "." || name == ".." {
		name = "_" + name
	}
	return name + ".json"
}

// Write stores k. It fails with an error wrapping storage.ErrExists if a
// wrapping by the same KEK is stored already.
func (ks KeySet) Write(ctx context.Context, k KeyObject) error {
	if k.KEKID == "" || len(k.Wrapped) == 0 {
		return fmt.Errorf("write key of %s: kek_id and wrapped key are required", ks.What)
	}
	if k.Created.IsZero() {
		k.Created = time.Now().UTC()
	}
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	key := ks.Prefix + KeyObjectName(k.KEKID)
	if err := ks.B.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("write key %s of %s: %w", key, ks.What, err)
	}
	return nil
}

// List returns the stored wrappings, sorted by KEK ID.
func (ks KeySet) List(ctx context.Context) ([]KeyObject, error) {
	objs, err := ks.B.List(ctx, ks.Prefix)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", ks.What, err)
	}
	var out []KeyObject
	for _, o := range objs {
		if strings.Contains(strings.TrimPrefix(o.Key, ks.Prefix), "/") || !strings.HasSuffix(o.Key, ".json") {
			continue
		}
		k, err := readKeyObject(ctx, ks.B, o.Key)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since listed (a rotation with --remove-old)
		}
		if err != nil {
			return nil, fmt.Errorf("read key of %s: %w", ks.What, err)
		}
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KEKID < out[j].KEKID })
	return out, nil
}

func readKeyObject(ctx context.Context, b storage.Backend, key string) (*KeyObject, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxKeyObjectSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	k, err := DecodeKeyObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if name := key[strings.LastIndexByte(key, '/')+1:]; name != KeyObjectName(k.KEKID) {
		return nil, fmt.Errorf("%s: %w: it holds the wrapping by %q, whose object is %s", key, ErrInvalidKeyObject, clipID(k.KEKID), KeyObjectName(k.KEKID))
	}
	return k, nil
}

// ErrInvalidKeyObject is wrapped when a key object read from the
// repository is malformed.
var ErrInvalidKeyObject = errors.New("not a valid key object")

// Bounds of a key object.
const (
	maxKEKIDLen   = 256
	maxWrappedLen = 4096 // a local wrapping is 60 bytes; a KMS's a few hundred
)

// DecodeKeyObject parses and validates a key object: kek_id printable
// ASCII without control characters, at most 256 bytes; wrapped 1..4096
// bytes. The error wraps ErrInvalidKeyObject.
func DecodeKeyObject(data []byte) (*KeyObject, error) {
	if len(data) > maxKeyObjectSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidKeyObject, maxKeyObjectSize)
	}
	var k KeyObject
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKeyObject, err)
	}
	switch {
	case k.KEKID == "" || len(k.Wrapped) == 0:
		return nil, fmt.Errorf("%w: kek_id or wrapped is missing", ErrInvalidKeyObject)
	case len(k.KEKID) > maxKEKIDLen:
		return nil, fmt.Errorf("%w: kek_id is longer than %d bytes", ErrInvalidKeyObject, maxKEKIDLen)
	case len(k.Wrapped) > maxWrappedLen:
		return nil, fmt.Errorf("%w: the wrapped key has %d bytes (at most %d)", ErrInvalidKeyObject, len(k.Wrapped), maxWrappedLen)
	}
	for i := 0; i < len(k.KEKID); i++ {
		if c := k.KEKID[i]; c < 0x21 || c > 0x7e {
			return nil, fmt.Errorf("%w: kek_id %q holds a byte that is not printable ASCII", ErrInvalidKeyObject, clipID(k.KEKID))
		}
	}
	return &k, nil
}

func clipID(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Delete removes the wrapping by KEK kekID (missing: not an error).
func (ks KeySet) Delete(ctx context.Context, kekID string) error {
	if err := ks.B.Delete(ctx, ks.Prefix+KeyObjectName(kekID)); err != nil {
		return fmt.Errorf("delete key %s of %s: %w", kekID, ks.What, err)
	}
	return nil
}

// Unwrap returns the data key unwrapped with the first key of ring (the
// current one first) that has a stored wrapping, and that key's ID. When
// none can, the error matches ErrNoUsableKey and says which KEK ids the
// repository has and which ring has; a key that fails for another reason (a
// KMS that cannot be reached) is returned as is, to be retried.
func (ks KeySet) Unwrap(ctx context.Context, ring *crypt.Keyring) (dataKey []byte, kekID string, err error) {
	objs, err := ks.List(ctx)
	if err != nil {
		return nil, "", err
	}
	return UnwrapAny(ks.What, objs, ring)
}

// keyNotHeldError is an ErrNoUsableKey that is the keyring's, not the
// repository's: the ring holds none of the key encryption keys that wrapped
// the data key (the stored wrappings were not tried, and may be sound).
type keyNotHeldError struct{ error }

func (e keyNotHeldError) Unwrap() error { return e.error }

// IsKeyNotHeld reports whether err is an ErrNoUsableKey of a keyring that
// holds none of the key encryption keys of the data key (or no keyring):
// the agent's configuration, not the backup, is at fault. Deleted or
// corrupt key objects are not.
func IsKeyNotHeld(err error) bool {
	var k keyNotHeldError
	return errors.As(err, &k)
}

// UnwrapAny is KeySet.Unwrap on key objects already read.
func UnwrapAny(what string, objs []KeyObject, ring *crypt.Keyring) ([]byte, string, error) {
	have := make([]string, 0, len(objs))
	for _, o := range objs {
		have = append(have, o.KEKID)
	}
	if len(objs) == 0 {
		return nil, "", fmt.Errorf("%w: %s is encrypted but the repository holds no wrapped data key for it (its keys/ objects were deleted): it cannot be decrypted", ErrNoUsableKey, what)
	}
	if ring == nil {
		return nil, "", keyNotHeldError{fmt.Errorf("%w: %s is encrypted with key encryption key %s, but this agent has no encryption key configured: set encryption.key_file or encryption.key_env (and old_key_files/old_key_envs for older keys) to a key with that id (`strata key id` prints the id of the configured key)",
			ErrNoUsableKey, what, quoteList(have))}
	}
	byID := map[string]KeyObject{}
	for _, o := range objs {
		byID[o.KEKID] = o
	}
	var wrong []string
	for _, id := range ring.IDs() {
		o, ok := byID[id]
		if !ok {
			continue
		}
		dk, err := ring.Unwrap(id, o.Wrapped)
		if err == nil {
			return dk, id, nil
		}
		if !errors.Is(err, crypt.ErrWrongKey) && !errors.Is(err, crypt.ErrUnknownKey) {
			return nil, "", fmt.Errorf("unwrap data key of %s: %w", what, err)
		}
		wrong = append(wrong, id)
	}
	msg := fmt.Sprintf("%s is encrypted with key encryption key %s; this agent has %s", what, quoteList(have), quoteList(ring.IDs()))
	if len(wrong) > 0 {
		msg += fmt.Sprintf(", and the wrapped key stored for %s does not open with it (corrupt key object)", quoteList(wrong))
	}
	err := fmt.Errorf("%w: %s: add a key with one of the backup's ids to encryption.old_key_files or encryption.old_key_envs (`strata key id` prints the id of the configured key)", ErrNoUsableKey, msg)
	if len(wrong) == 0 {
		return nil, "", keyNotHeldError{err}
	}
	return nil, "", err
}

func quoteList(ids []string) string {
	if len(ids) == 0 {
		return "(none)"
	}
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}

// ListBinlogKeyRefs returns the sorted key refs of an instance's binlog
// archive (one per archive run that encrypted segments).
func ListBinlogKeyRefs(ctx context.Context, b storage.Backend, instance string) ([]string, error) {
	prefix := BinlogKeysPrefix(instance)
	objs, err := b.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list binlog keys of instance %q: %w", instance, err)
	}
	seen := map[string]bool{}
	var refs []string
	for _, o := range objs {
		ref, _, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if ok && ref != "" && !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	sort.Strings(refs)
	return refs, nil
}

// saltSize is the size of the chunk-naming salt of unencrypted backups.
const saltSize = 32

// saltObject is the JSON of a backup's salt object.
type saltObject struct {
	Salt    []byte    `json:"salt"`
	Created time.Time `json:"created"`
}

// SaltKey returns the key of a backup's salt object.
func SaltKey(instance, backupID string) string { return BackupPrefix(instance, backupID) + "salt.json" }

// BackupSalt returns the salt that names the chunks of an unencrypted
// backup, creating it on first use; a retried attempt of the same backup
// reads back the same salt, so identical chunks get identical names. found
// reports whether it was stored already.
func (r *Repo) BackupSalt(ctx context.Context, instance, backupID string) (salt []byte, found bool, err error) {
	if err := checkIDs(instance, backupID); err != nil {
		return nil, false, fmt.Errorf("backup salt: %w", err)
	}
	key := SaltKey(instance, backupID)
	if s, err := r.readSalt(ctx, key); err == nil {
		return s, true, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, false, err
	}
	s := saltObject{Salt: make([]byte, saltSize), Created: time.Now().UTC()}
	_, _ = rand.Read(s.Salt)
	data, err := json.Marshal(s)
	if err != nil {
		return nil, false, err
	}
	err = r.b.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, storage.ErrExists) {
		// Another attempt stored one first: use it.
		got, rerr := r.readSalt(ctx, key)
		return got, true, rerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("write %s: %w", key, err)
	}
	return s.Salt, false, nil
}

// HasSalt reports whether a backup has a salt object (it was, or is being,
// uploaded unencrypted).
func (r *Repo) HasSalt(ctx context.Context, instance, backupID string) (bool, error) {
	_, err := r.b.Stat(ctx, SaltKey(instance, backupID))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (r *Repo) readSalt(ctx context.Context, key string) ([]byte, error) {
	rc, err := r.b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxKeyObjectSize))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	var s saltObject
	if err := json.Unmarshal(data, &s); err != nil || len(s.Salt) != saltSize {
		return nil, fmt.Errorf("%s is not a valid salt object (%d bytes of salt, want %d): delete the partial upload", key, len(s.Salt), saltSize)
	}
	return s.Salt, nil
}

// DeleteUnreferencedChunks deletes the objects under a backup's chunks/
// that its manifest does not list: chunks stored by an interrupted attempt
// that the completed attempt did not produce again. It returns how many
// objects and bytes it deleted.
func (r *Repo) DeleteUnreferencedChunks(ctx context.Context, m *manifest.Manifest) (n int, size int64, err error) {
	if err := checkIDs(m.Instance, m.BackupID); err != nil {
		return 0, 0, err
	}
	prefix := BackupPrefix(m.Instance, m.BackupID)
	keep := make(map[string]bool, len(m.Chunks))
	for _, c := range m.Chunks {
		keep[prefix+c.Key] = true
	}
	objs, err := r.b.List(ctx, prefix+"chunks/")
	if err != nil {
		return 0, 0, fmt.Errorf("list chunks of backup %q of instance %q: %w", m.BackupID, m.Instance, err)
	}
	for _, o := range objs {
		if keep[o.Key] {
			continue
		}
		if err := r.b.Delete(ctx, o.Key); err != nil {
			return n, size, fmt.Errorf("delete unreferenced chunk %s: %w", o.Key, err)
		}
		n++
		size += o.Size
	}
	return n, size, nil
}
