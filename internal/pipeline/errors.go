package pipeline

import (
	"errors"
	"fmt"
)

// ErrCorrupt matches (with errors.Is) every integrity failure: a ChunkError
// caused by corrupt stored data, or a mismatch of the whole stream's sha256.
// Missing chunks and read errors do not match it.
var ErrCorrupt = errors.New("backup data is corrupt")

// ErrEncrypted matches (with errors.Is) the ChunkError of a Download without
// DownloadOptions.Cipher that finds an encrypted chunk.
var ErrEncrypted = errors.New("backup is encrypted: a decryption key is needed")

// ChunkError reports a problem with one stored chunk: missing, unreadable,
// failing an integrity check, or failing decryption (then Err matches
// crypt.ErrDecrypt, crypt.ErrNotEncrypted or ErrEncrypted; such errors do not
// match ErrCorrupt, since the stored bytes are those recorded).
type ChunkError struct {
	Index  int    // chunk index in the manifest
	Key    string // chunk key relative to the backup prefix
	Reason string // what is wrong, e.g. "sha256 mismatch: stored data is corrupt"
	Err    error  // underlying error, if any (e.g. wrapping storage.ErrNotFound)

	corrupt bool
}

// Error formats the problem as `chunk 3 (chunks/00000003.zst): reason[: err]`.
func (e *ChunkError) Error() string {
	msg := fmt.Sprintf("chunk %d (%s): %s", e.Index, e.Key, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *ChunkError) Unwrap() error { return e.Err }

// Is makes integrity failures match ErrCorrupt.
func (e *ChunkError) Is(target error) bool { return target == ErrCorrupt && e.corrupt }

// Corrupt reports whether the chunk exists but its data failed an integrity
// check (as opposed to being missing or unreadable).
func (e *ChunkError) Corrupt() bool { return e.corrupt }
