package physical

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-backup/strata/internal/server"
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
	return ownerGone(b)
}

// ownerGone says whether the process named in an owner file's content b
// is gone.
func ownerGone(b []byte) bool {
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return true
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// cloneOwnerSuffix names the file beside a clone directory that records
// the process that made it: CLONE creates the directory itself, so the
// owner cannot be recorded inside.
const cloneOwnerSuffix = ".owner"

// markCloneOwner records this process as the owner of clone directory dir.
func markCloneOwner(dir string) error {
	return os.WriteFile(dir+cloneOwnerSuffix, []byte(strconv.Itoa(os.Getpid())), 0o600)
}

// SweepClones removes the clone directories (strata-clone-*) under each
// of parents whose owning process is gone: the full copies of the data a
// killed agent left behind, which no retry may come to remove. A server
// left running on one (reading its consistent point) is killed first. It
// returns the directories removed.
func SweepClones(ctx context.Context, parents ...string) ([]string, error) {
	var removed []string
	seen := map[string]bool{}
	for _, parent := range parents {
		if seen[parent] {
			continue
		}
		seen[parent] = true
		owners, err := filepath.Glob(filepath.Join(parent, "strata-clone-*"+cloneOwnerSuffix))
		if err != nil {
			return removed, err
		}
		for _, owner := range owners {
			b, err := os.ReadFile(owner)
			if err != nil || !ownerGone(b) {
				continue
			}
			dir := strings.TrimSuffix(owner, cloneOwnerSuffix)
			if err := server.KillStale(ctx, dir); err != nil {
				return removed, err
			}
			if err := os.RemoveAll(dir); err != nil {
				return removed, err
			}
			if err := os.Remove(owner); err != nil && !os.IsNotExist(err) {
				return removed, err
			}
			removed = append(removed, dir)
		}
	}
	return removed, nil
}
