package crypt

import (
	"errors"
	"fmt"
)

// KeySources says where the key encryption keys of a keyring come from:
// the current key from a file or an environment variable, and old keys
// (kept to unwrap the data keys of backups taken before a rotation) from
// files and environment variables. They mirror the `encryption:` block of
// strata.yaml.
type KeySources struct {
	KeyFile     string
	KeyEnv      string
	OldKeyFiles []string
	OldKeyEnvs  []string
}

// Configured reports whether a current key is named at all.
func (s KeySources) Configured() bool { return s.KeyFile != "" || s.KeyEnv != "" }

// LoadKeyring reads the keys named by s and returns their keyring, or nil
// when s names no current key (encryption not configured). Every error
// names the configuration key to fix (encryption.key_file, ...), never key
// material.
func LoadKeyring(s KeySources) (*Keyring, error) {
	if !s.Configured() {
		if len(s.OldKeyFiles)+len(s.OldKeyEnvs) > 0 {
			return nil, &cryptError{kind: ErrInvalidKey,
				msg: "encryption: old_key_files/old_key_envs are set but no current key: set encryption.key_file or encryption.key_env"}
		}
		return nil, nil
	}
	if s.KeyFile != "" && s.KeyEnv != "" {
		return nil, &cryptError{kind: ErrInvalidKey, msg: "encryption: set only one of key_file and key_env"}
	}
	var current KeyEncryptionKey
	var err error
	if s.KeyFile != "" {
		current, err = fromFile("encryption.key_file", s.KeyFile)
	} else {
		current, err = fromEnv("encryption.key_env", s.KeyEnv)
	}
	if err != nil {
		return nil, err
	}
	var old []KeyEncryptionKey
	for i, f := range s.OldKeyFiles {
		k, err := fromFile(fmt.Sprintf("encryption.old_key_files[%d]", i), f)
		if err != nil {
			return nil, err
		}
		old = append(old, k)
	}
	for i, e := range s.OldKeyEnvs {
		k, err := fromEnv(fmt.Sprintf("encryption.old_key_envs[%d]", i), e)
		if err != nil {
			return nil, err
		}
		old = append(old, k)
	}
	return NewKeyring(current, old...)
}

func fromFile(key, path string) (KeyEncryptionKey, error) {
	k, err := KEKFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return k, nil
}

func fromEnv(key, name string) (KeyEncryptionKey, error) {
	k, err := KEKFromEnv(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return k, nil
}

// IsKeyError reports whether err is a problem with keys that retrying cannot
// fix: an unknown or wrong key encryption key, invalid key material, or
// data that does not decrypt.
func IsKeyError(err error) bool {
	return errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrWrongKey) || errors.Is(err, ErrInvalidKey) ||
		errors.Is(err, ErrDecrypt) || errors.Is(err, ErrNotEncrypted)
}
