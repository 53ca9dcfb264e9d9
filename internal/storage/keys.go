package storage

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey is returned (wrapped) when an object key or list prefix is
// malformed.
var ErrInvalidKey = errors.New("invalid object key")

// ValidateKey checks that key is a well-formed object key: a non-empty,
// relative, '/'-separated path without empty, "." or ".." segments, without
// NUL or backslash characters. Backends call it so that every backend accepts
// exactly the same keys.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: key is empty", ErrInvalidKey)
	}
	return validatePath(key, false)
}

// ValidatePrefix checks a List prefix. The empty prefix (everything) is valid,
// and a prefix may end with '/' or with a partial segment name ("inst/back"),
// but it must otherwise obey the rules of ValidateKey.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validatePath(prefix, true)
}

func validatePath(p string, isPrefix bool) error {
	what := "key"
	if isPrefix {
		what = "prefix"
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: %s %q is absolute (must be relative)", ErrInvalidKey, what, p)
	}
	if strings.ContainsAny(p, "\x00\\") {
		return fmt.Errorf("%w: %s %q contains a NUL or backslash character", ErrInvalidKey, what, p)
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		if s == "" {
			if isPrefix && last {
				continue // "a/b/" is a valid prefix
			}
			return fmt.Errorf("%w: %s %q has an empty path segment", ErrInvalidKey, what, p)
		}
		if s == "." || s == ".." {
			if isPrefix && last {
				continue // "a/." may be the start of "a/.hidden" or "a/..x"
			}
			return fmt.Errorf("%w: %s %q contains a %q segment", ErrInvalidKey, what, p, s)
		}
	}
	return nil
}
