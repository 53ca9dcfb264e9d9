package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/strata-backup/strata/internal/server"
)

// ScratchDirName is the directory under an agent's scratch area
// (agent.scratch_dir) that holds the drills' scratch servers.
const ScratchDirName = "drills"

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Scratch is where one drill's scratch server lives on its agent: Dir
// (<scratch>/drills/<instance>/<drill id>) holds everything the drill
// creates, and Datadir, inside it, is the restored datadir. The instance is
// part of the path because drill ids are only unique per instance: two
// instances drilled on one drill host in the same second (scheduled drills
// take their id from the start time) must not share a directory.
type Scratch struct {
	Dir     string `json:"dir"`
	Datadir string `json:"datadir"`
}

// ScratchFor returns the scratch of the instance's drill drillID under the
// agent's scratch root.
func ScratchFor(root, instance, drillID string) (Scratch, error) {
	if !idRE.MatchString(instance) || instance == "." || instance == ".." {
		return Scratch{}, fmt.Errorf("instance %q must be letters, digits, '.', '_' or '-'", instance)
	}
	if !idRE.MatchString(drillID) {
		return Scratch{}, fmt.Errorf("drill id %q must be letters, digits, '.', '_' or '-'", drillID)
	}
	if !filepath.IsAbs(root) {
		return Scratch{}, fmt.Errorf("scratch dir %q must be an absolute path (agent.scratch_dir)", root)
	}
	dir := filepath.Join(filepath.Clean(root), ScratchDirName, instance, drillID)
	return Scratch{Dir: dir, Datadir: filepath.Join(dir, "data")}, nil
}

// Prepare creates the drill's directory (not the datadir, which the
// restore creates). A directory left by an earlier attempt of the same
// drill is torn down first: the drill starts from nothing.
func (s Scratch) Prepare(ctx context.Context) error {
	if err := s.Teardown(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	// Created by someone else between the check and MkdirAll: refused.
	if err := s.checkPath(); err != nil {
		return err
	}
	return nil
}

// checkPath refuses a drill path whose drills dir, instance dir or drill
// dir is a symbolic link, not a directory, or not this process's: the
// default scratch root is the system's temp dir, where any local user may
// have created <tmp>/drills as a link to a datadir that a teardown would
// then remove.
func (s Scratch) checkPath() error {
	inst := filepath.Dir(s.Dir)
	for _, d := range []string{filepath.Dir(inst), inst, s.Dir} {
		if err := checkOwnDir(d); err != nil {
			return err
		}
	}
	return nil
}

// ErrUnsafeScratch is returned (wrapped) for a drill scratch path that is
// a symbolic link, not a directory, or another user's.
var ErrUnsafeScratch = errors.New("unsafe drill scratch path")

// checkOwnDir returns nil when path is absent, or a directory (not a
// symbolic link) owned by this process's user.
func checkOwnDir(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory (a symbolic link or a file): remove it, or set agent.scratch_dir to a directory of the agent's own", ErrUnsafeScratch, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%w: %s is owned by uid %d, not by the agent's uid %d: remove it, or set agent.scratch_dir to a directory of the agent's own", ErrUnsafeScratch, path, st.Uid, os.Getuid())
	}
	return nil
}

// Teardown stops any server running on the datadir (SIGTERM, then SIGKILL
// after grace) and removes the drill's directory. It is idempotent.
func (s Scratch) Teardown(ctx context.Context) error {
	if err := s.checkPath(); err != nil {
		return err
	}
	if err := StopServer(ctx, s.Datadir, 30*time.Second); err != nil {
		return err
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove drill dir %s: %w", s.Dir, err)
	}
	// The instance's dir, when no other drill of it is there (an error
	// says one is: it stays).
	_ = os.Remove(filepath.Dir(s.Dir))
	return nil
}

// StopServer stops the server running on datadir, if any: SIGTERM, then
// SIGKILL when it has not exited after grace.
func StopServer(ctx context.Context, datadir string, grace time.Duration) error {
	pid, ok := server.Running(datadir)
	if !ok {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for {
		if _, ok := server.Running(datadir); !ok {
			return nil
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(grace)
		}
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Sweep tears down every drill directory under the scratch root: an agent
// that starts runs no drill yet, so whatever is there was left by an agent
// that was killed mid-drill. It returns the directories it removed: one per
// instance (<scratch>/drills/<instance>, after stopping the server of each
// of its drills), or a drill directory of the older one-level layout
// (<scratch>/drills/<drill id>).
func Sweep(ctx context.Context, root string) ([]string, error) {
	base := filepath.Join(root, ScratchDirName)
	if err := checkOwnDir(base); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(base, e.Name())
		if err := stopServersUnder(ctx, dir); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove drill dir %s: %w", dir, err))
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// stopServersUnder stops the servers of dir's drills: dir/data (a drill
// dir of the one-level layout) and dir/<drill id>/data.
func stopServersUnder(ctx context.Context, dir string) error {
	if err := StopServer(ctx, filepath.Join(dir, "data"), 30*time.Second); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "data" {
			continue
		}
		if err := StopServer(ctx, filepath.Join(dir, e.Name(), "data"), 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}
