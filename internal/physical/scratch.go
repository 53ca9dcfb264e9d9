package physical

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerFile names the process that owns a scratch directory.
const ownerFile = "owner.pid"

// markOwner records this process as the owner of a scratch directory, so
// that SweepScratch can tell an abandoned one (its process was killed)
// from one in use.
func markOwner(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600)
}

// SweepScratch removes the scratch directories (strata-backup-*,
// strata-replay-*) under dir whose owning process is gone: what a killed
// agent left behind, including the option files that hold a password. It
// returns the directories removed.
func SweepScratch(dir string) ([]string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !(strings.HasPrefix(name, "strata-backup-") || strings.HasPrefix(name, "strata-replay-")) {
			continue
		}
		p := filepath.Join(dir, name)
		if !abandoned(p) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}

// abandoned says whether a scratch directory's owner is dead (or, for a
// directory without an owner file, whether it is over an hour old).
func abandoned(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		st, serr := os.Stat(dir)
		return serr == nil && time.Since(st.ModTime()) > time.Hour
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return true
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
