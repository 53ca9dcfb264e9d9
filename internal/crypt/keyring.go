package crypt

import (
	"errors"
	"fmt"
	"strings"
)

// Keyring holds the key encryption keys of an agent: the current one, which
// wraps the data keys of new backups, and old ones, kept to unwrap the data
// keys of backups taken before a key rotation. It is safe for concurrent
// use (it is immutable).
type Keyring struct {
	current KeyEncryptionKey
	byID    map[string]KeyEncryptionKey
	ids     []string // current first, then old keys in the given order
}

// NewKeyring returns a keyring wrapping new data keys with current and
// unwrapping with current or any of old. Keys are identified by ID; an old
// key with the ID of a key already given is ignored (the same key configured
// twice).
func NewKeyring(current KeyEncryptionKey, old ...KeyEncryptionKey) (*Keyring, error) {
	if current == nil {
		return nil, &cryptError{kind: ErrInvalidKey, msg: "keyring needs a current key encryption key"}
	}
	k := &Keyring{current: current, byID: map[string]KeyEncryptionKey{}}
	for i, kek := range append([]KeyEncryptionKey{current}, old...) {
		if kek == nil {
			return nil, &cryptError{kind: ErrInvalidKey, msg: fmt.Sprintf("old key encryption key %d of %d is nil", i, len(old))}
		}
		id := kek.ID()
		if id == "" {
			return nil, &cryptError{kind: ErrInvalidKey, msg: "a key encryption key has an empty ID"}
		}
		if _, dup := k.byID[id]; dup {
			continue
		}
		k.byID[id] = kek
		k.ids = append(k.ids, id)
	}
	return k, nil
}

// Current returns the key that wraps new data keys.
func (k *Keyring) Current() KeyEncryptionKey { return k.current }

// IDs returns the IDs of all keys, the current one first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// Has reports whether the keyring holds the key called id.
func (k *Keyring) Has(id string) bool {
	_, ok := k.byID[id]
	return ok
}

// Wrap wraps dataKey with the current key and returns the current key's ID
// (to record with the backup) and the wrapped key.
func (k *Keyring) Wrap(dataKey []byte) (kekID string, wrapped []byte, err error) {
	wrapped, err = k.current.Wrap(dataKey)
	if err != nil {
		return "", nil, fmt.Errorf("wrap data key with %q: %w", k.current.ID(), err)
	}
	return k.current.ID(), wrapped, nil
}

// Unwrap unwraps a data key wrapped by the key called kekID. If the keyring
// has no such key, the error matches ErrUnknownKey; if that key cannot
// unwrap it, the error matches ErrWrongKey; other errors of the key (a KMS
// that cannot be reached, ...) are returned wrapped.
func (k *Keyring) Unwrap(kekID string, wrapped []byte) ([]byte, error) {
	kek, ok := k.byID[kekID]
	if !ok {
		return nil, &cryptError{kind: ErrUnknownKey,
			msg: fmt.Sprintf("backup key was wrapped by key %q which this agent does not have (it has %s): configure it in encryption.old_key_files",
				kekID, strings.Join(quoteAll(k.ids), ", "))}
	}
	key, err := kek.Unwrap(wrapped)
	if err != nil {
		if errors.Is(err, ErrWrongKey) {
			return nil, err
		}
		// Other failures (e.g. a KMS that cannot be reached) may be
		// transient: they do not match ErrWrongKey.
		return nil, fmt.Errorf("unwrap backup key with key %q: %w", kekID, err)
	}
	return key, nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
