package crypt

import "errors"

// Sentinel errors, matched with errors.Is. The errors returned by this
// package carry a message saying what is wrong and how to fix it; these
// sentinels only classify them.
var (
	// ErrDecrypt matches every failure to authenticate encrypted data: the
	// data key is not the one the data was encrypted with, the data was
	// modified, or a chunk was moved to another position or taken from
	// another backup.
	ErrDecrypt = errors.New("decryption failed")
	// ErrNotEncrypted matches an attempt to decrypt data that does not carry
	// Strata's encryption header (it was stored without encryption).
	ErrNotEncrypted = errors.New("data is not encrypted")
	// ErrUnknownKey matches a request for a key encryption key that the
	// keyring does not hold.
	ErrUnknownKey = errors.New("unknown key encryption key")
	// ErrWrongKey matches a wrapped data key that the key encryption key of
	// its recorded ID cannot unwrap (wrong key, or corrupt wrapped key).
	ErrWrongKey = errors.New("wrong key encryption key")
	// ErrInvalidKey matches key material of the wrong size or format.
	ErrInvalidKey = errors.New("invalid key")
)

// cryptError is an error with a complete human-readable message that matches
// its kind (one of the sentinels) and, if set, its cause.
type cryptError struct {
	kind error
	msg  string
	err  error
}

func (e *cryptError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *cryptError) Unwrap() []error {
	if e.err != nil {
		return []error{e.kind, e.err}
	}
	return []error{e.kind}
}
