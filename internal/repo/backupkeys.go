package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/storage"
)

// UploadKeys is how one backup's chunks are named and encrypted.
type UploadKeys struct {
	// NameKey keys the chunk names (pipeline.ContentChunkKey).
	NameKey []byte
	// Cipher encrypts the chunks; nil: the backup is not encrypted.
	Cipher *crypt.ChunkCipher
	// DataKey is the backup's raw data key (nil when not encrypted). Keys
	// for other purposes are derived from it; it is never stored unwrapped.
	DataKey []byte
	// KEKID is the key encryption key that wrapped the data key.
	KEKID string
	// Resumed is true when the key or salt was stored by an earlier attempt:
	// some chunks may be stored already.
	Resumed bool
	// Discarded, when not empty, says why the partial upload of an earlier
	// attempt was discarded (DiscardUpload) before the keys were made.
	Discarded string
}

// OpenUploadKeys returns the naming key (and, when encrypt, the cipher) of
// a backup about to be uploaded: read back from the repository when an
// earlier attempt stored them, so that identical chunks get identical
// names, or created and stored before any chunk. An encrypted backup's data
// key is stored wrapped by ring's current key encryption key under
// keys/<kek-id>.json; an unencrypted backup's chunk names are keyed by a
// random salt in salt.json. A partial upload made in the other mode, or
// whose data key ring cannot unwrap, is discarded (its lease is kept).
func (r *Repo) OpenUploadKeys(ctx context.Context, instance, backupID string, encrypt bool, ring *crypt.Keyring) (*UploadKeys, error) {
	if err := checkIDs(instance, backupID); err != nil {
		return nil, fmt.Errorf("backup keys: %w", err)
	}
	if encrypt && ring == nil {
		return nil, fmt.Errorf("backup %q of instance %q is to be encrypted but no key encryption key is loaded", backupID, instance)
	}
	ks := r.BackupKeys(instance, backupID)
	objs, err := ks.List(ctx)
	if err != nil {
		return nil, err
	}
	hasSalt, err := r.HasSalt(ctx, instance, backupID)
	if err != nil {
		return nil, err
	}
	var discarded string
	discard := func(why string) error {
		if err := r.DiscardUpload(ctx, instance, backupID); err != nil {
			return fmt.Errorf("discard partial upload of %s: %w", backupID, err)
		}
		objs, hasSalt, discarded = nil, false, why
		return nil
	}
	if !encrypt {
		if len(objs) > 0 {
			if err := discard("it was stored encrypted and this instance's backups are not encrypted now"); err != nil {
				return nil, err
			}
		}
		salt, found, err := r.BackupSalt(ctx, instance, backupID)
		if err != nil {
			return nil, err
		}
		return &UploadKeys{NameKey: salt, Resumed: found, Discarded: discarded}, nil
	}

	if hasSalt {
		if err := discard("it was stored unencrypted and this instance's backups are encrypted now"); err != nil {
			return nil, err
		}
	}
	if len(objs) > 0 {
		dk, kekID, err := UnwrapAny(ks.What, objs, ring)
		switch {
		case err == nil:
			return newUploadKeys(dk, backupID, kekID, true, discarded)
		case errors.Is(err, ErrNoUsableKey):
			if err := discard("its data key is wrapped by a key this agent does not have"); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
	dk, err := crypt.NewDataKey()
	if err != nil {
		return nil, err
	}
	kekID, wrapped, err := ring.Wrap(dk)
	if err != nil {
		return nil, err
	}
	err = ks.Write(ctx, KeyObject{KEKID: kekID, Wrapped: wrapped})
	if errors.Is(err, storage.ErrExists) {
		// Another attempt of this backup stored its key first: use it.
		dk, kekID, err = ks.Unwrap(ctx, ring)
		if err != nil {
			return nil, err
		}
		return newUploadKeys(dk, backupID, kekID, true, discarded)
	}
	if err != nil {
		return nil, err
	}
	return newUploadKeys(dk, backupID, kekID, false, discarded)
}

func newUploadKeys(dataKey []byte, backupID, kekID string, resumed bool, discarded string) (*UploadKeys, error) {
	c, err := crypt.NewChunkCipher(dataKey, backupID)
	if err != nil {
		return nil, err
	}
	nk, err := crypt.ChunkNameKey(dataKey)
	if err != nil {
		return nil, err
	}
	return &UploadKeys{NameKey: nk, Cipher: c, DataKey: dataKey, KEKID: kekID, Resumed: resumed, Discarded: discarded}, nil
}
