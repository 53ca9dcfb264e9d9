package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/storage"
)

// Rotation is what RotateKeySet did (or, in a dry run, would do) to one
// data key.
type Rotation struct {
	// What names the key's owner, e.g. `backup "b1" of instance "db1"`.
	What string `json:"what"`
	// Had lists the KEK ids that wrapped the key before.
	Had []string `json:"had"`
	// Added is the current KEK id when a wrapping by it was added.
	Added string `json:"added,omitempty"`
	// From is the KEK id whose wrapping was unwrapped to add it.
	From string `json:"from,omitempty"`
	// Removed lists the KEK ids whose wrappings were deleted.
	Removed []string `json:"removed,omitempty"`
}

// RotateKeySet makes sure the data key of ks is wrapped by the current key
// of ring: if no wrapping by it exists, the data key is unwrapped with any
// key of ring that has one and wrapped again by the current key (the data
// it protects is untouched). With removeOld, wrappings by other keys are
// deleted afterwards, but only once the current key's wrapping has been
// read back and unwrapped. dryRun changes nothing.
//
// A key set that no key of ring can unwrap gives an error matching
// ErrNoUsableKey.
func RotateKeySet(ctx context.Context, ks KeySet, ring *crypt.Keyring, removeOld, dryRun bool) (*Rotation, error) {
	if ring == nil {
		return nil, fmt.Errorf("rotate keys of %s: no encryption key configured: set encryption.key_file or encryption.key_env", ks.What)
	}
	objs, err := ks.List(ctx)
	if err != nil {
		return nil, err
	}
	cur := ring.Current().ID()
	rot := &Rotation{What: ks.What}
	hasCurrent := false
	for _, o := range objs {
		rot.Had = append(rot.Had, o.KEKID)
		hasCurrent = hasCurrent || o.KEKID == cur
	}
	if len(objs) == 0 {
		return rot, nil // nothing encrypted here
	}
	if !hasCurrent {
		dk, from, err := UnwrapAny(ks.What, objs, ring)
		if err != nil {
			return rot, err
		}
		rot.From, rot.Added = from, cur
		if !dryRun {
			_, wrapped, err := ring.Wrap(dk)
			if err != nil {
				return rot, err
			}
			err = ks.Write(ctx, KeyObject{KEKID: cur, Wrapped: wrapped})
			if err != nil && !errors.Is(err, storage.ErrExists) { // exists: a concurrent rotation
				return rot, err
			}
		}
	}
	if !removeOld {
		return rot, nil
	}
	if !dryRun {
		// Read the current wrapping back and open it before deleting any
		// other: the old ones are the only copies until then.
		after, err := ks.List(ctx)
		if err != nil {
			return rot, err
		}
		var mine []KeyObject
		for _, o := range after {
			if o.KEKID == cur {
				mine = append(mine, o)
			}
		}
		dk, _, err := UnwrapAny(ks.What, mine, ring)
		if err != nil {
			return rot, fmt.Errorf("keep the old keys of %s: the wrapping by the current key does not open: %w", ks.What, err)
		}
		if len(after) > 1 {
			// Every other wrapping must hold the same data key, as far as
			// this keyring can tell.
			for _, o := range after {
				if o.KEKID == cur || !ring.Has(o.KEKID) {
					continue
				}
				if other, err := ring.Unwrap(o.KEKID, o.Wrapped); err == nil && !bytes.Equal(other, dk) {
					return rot, fmt.Errorf("keep the old keys of %s: the wrappings by %s and %s hold different data keys", ks.What, cur, o.KEKID)
				}
			}
		}
	}
	for _, id := range rot.Had {
		if id == cur {
			continue
		}
		if !dryRun {
			if err := ks.Delete(ctx, id); err != nil {
				return rot, err
			}
		}
		rot.Removed = append(rot.Removed, id)
	}
	return rot, nil
}

// EncryptedKeySets lists the key sets of an instance: those of its backups
// (complete or partial) and of its binlog archive runs.
func (r *Repo) EncryptedKeySets(ctx context.Context, instance string) ([]KeySet, error) {
	ids, _, err := r.scan(ctx, instance)
	if err != nil {
		return nil, fmt.Errorf("list backups of instance %q: %w", instance, err)
	}
	var out []KeySet
	for _, id := range ids {
		objs, err := r.b.List(ctx, BackupKeysPrefix(instance, id))
		if err != nil {
			return nil, err
		}
		if len(objs) > 0 {
			out = append(out, r.BackupKeys(instance, id))
		}
	}
	refs, err := ListBinlogKeyRefs(ctx, r.b, instance)
	if err != nil {
		return nil, err
	}
	for _, ref := range refs {
		out = append(out, BinlogKeys(r.b, instance, ref))
	}
	return out, nil
}

// Instances returns the sorted names of the instances that have backups or
// a binlog archive in the repository, whether or not a config still names
// them: the first path element of every key "<instance>/backups/..." or
// "<instance>/binlogs/...". It lists the whole repository, so it is meant
// for rare, repository-wide operations such as key rotation.
func (r *Repo) Instances(ctx context.Context) ([]string, error) {
	objs, err := r.b.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list the instances of %s: %w", r.b, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, o := range objs {
		parts := strings.SplitN(o.Key, "/", 3)
		if len(parts) < 3 || (parts[1] != "backups" && parts[1] != "binlogs") || seen[parts[0]] {
			continue
		}
		if checkName("instance", parts[0]) != nil {
			continue
		}
		seen[parts[0]] = true
		out = append(out, parts[0])
	}
	sort.Strings(out)
	return out, nil
}
