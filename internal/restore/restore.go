// Package restore is the resumable local restore engine: it stages a backup
// chain beside the target datadir, applies it member by member, and moves
// the result into the target, recording its phase in the staging dir's
// state.json so that a retried attempt resumes after the last completed
// step. What to download and how to prepare are Steps of the caller; this
// package owns the phases and the target-guard rules:
//
//   - Strata clears only what this workflow run created: a target that
//     holds a replay marker (internal/replay) or a staging dir whose state
//     names another workflow run is refused, never cleared.
//   - A target with a running server is refused, always; it is never killed.
//   - A target that exists and is not a directory is refused.
//   - Any other non-empty target is refused: Strata never overwrites a datadir.
//   - The staging dir holds decrypted data: it is created 0700 and Discard
//     removes it when the restore is cancelled or finally fails.
package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/replay"
	"github.com/strata-backup/strata/internal/server"
)

// Errors, matched with errors.Is; each message says what to do.
var (
	// ErrTargetNotEmpty: the target holds files this run did not create.
	ErrTargetNotEmpty = errors.New("target dir is not empty")
	// ErrTargetInUse: a server runs on the target, or the staging dir
	// belongs to another restore.
	ErrTargetInUse = errors.New("target dir is in use")
	// ErrTargetNotDir: the target exists and is not a directory.
	ErrTargetNotDir = errors.New("target is not a directory")
	// ErrInsufficientSpace: the filesystem cannot hold the restore.
	ErrInsufficientSpace = errors.New("not enough free space")
)

// Phases, recorded in state.json.
const (
	PhaseFetching  = "fetching"  // member Applied is being downloaded (base/ intact unless Applied is 0)
	PhasePreparing = "preparing" // member Applied is being applied to base/: base/ may be half-changed
	PhasePrepared  = "prepared"  // Applied members are fully prepared in base/
	PhaseMoving    = "moving"    // move-back into the target has begun
	PhaseDone      = "done"      // the target holds the restored datadir
)

// Owner names the workflow run a restore belongs to.
type Owner struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

func (o Owner) String() string { return fmt.Sprintf("workflow %q run %q", o.WorkflowID, o.RunID) }

// State is the content of state.json.
type State struct {
	Owner    Owner    `json:"owner"`
	BackupID string   `json:"backup_id"`
	Chain    []string `json:"chain"`
	Phase    string   `json:"phase"`
	Applied  int      `json:"applied"` // chain members prepared into base/
}

// Job is one restore.
type Job struct {
	Target   string // absolute; cleaned by Run
	Owner    Owner
	BackupID string
	Chain    []string // backup ids, from the full to BackupID
	// Space is the bytes the restore needs on the target's filesystem
	// (see ChainSpace).
	Space int64
}

func (j Job) matches(s State) bool {
	return s.Owner == j.Owner && s.BackupID == j.BackupID && slices.Equal(s.Chain, j.Chain)
}

// Steps are the caller's parts of a restore. Member i is Job.Chain[i].
type Steps struct {
	// Staged is called once the staging dir is ready, with the dir in it
	// for the chunk cache (kept across the retries of one run).
	Staged func(cacheDir string) error
	// Fetch downloads member i and extracts it into dir (empty).
	Fetch func(ctx context.Context, i int, dir string) error
	// Prepare applies member i: the full in base (inc ""), or the
	// incremental in inc onto base.
	Prepare func(ctx context.Context, i int, base, inc string) error
	// Applied is called when member i is prepared into base; optional.
	Applied func(i int)
	// MoveBack moves the prepared base into target.
	MoveBack func(ctx context.Context, base, target string) error
}

// Result says where the restore started.
type Result struct {
	// Resumed is the number of members an earlier attempt had applied.
	Resumed int
	// AlreadyDone is true when an earlier attempt had finished.
	AlreadyDone bool
}

// StagingDir is where a restore into target is staged: beside the target,
// so that the move-back is a rename on the same filesystem.
func StagingDir(target string) string {
	target = filepath.Clean(target)
	return filepath.Join(filepath.Dir(target), ".strata-restore-"+filepath.Base(target))
}

const stateFile = "state.json"

// DoneFile is written into the target once the move-back is complete: it
// names the workflow run and the chain, so that a retry of that run whose
// earlier attempt finished (and removed its staging dir) but could not
// report it knows the restore is done, rather than finding a non-empty
// target. Like the replay's markers, it stays in the restored datadir.
const DoneFile = "strata-restore.done"

// done is the content of DoneFile.
type done struct {
	Owner    Owner    `json:"owner"`
	BackupID string   `json:"backup_id"`
	Chain    []string `json:"chain"`
}

// restoredByJob says whether target holds the DoneFile of job.
func restoredByJob(target string, job Job) bool {
	b, err := os.ReadFile(filepath.Join(target, DoneFile))
	if err != nil {
		return false
	}
	var d done
	if json.Unmarshal(b, &d) != nil {
		return false
	}
	return job.matches(State{Owner: d.Owner, BackupID: d.BackupID, Chain: d.Chain})
}

// ReadState returns the staging dir's state; found is false when there is
// no state.json. A state.json that does not parse has no owner.
func ReadState(staging string) (s State, found bool) {
	b, err := os.ReadFile(filepath.Join(staging, stateFile))
	if err != nil {
		return State{}, false
	}
	if json.Unmarshal(b, &s) != nil {
		return State{}, true
	}
	return s, true
}

// firstStateOf says whether staging holds nothing but the temporary file
// of owner's first state: an attempt killed before it renamed it.
func firstStateOf(staging string, owner Owner) bool {
	entries, err := os.ReadDir(staging)
	if err != nil || len(entries) != 1 || entries[0].Name() != stateFile+".tmp" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(staging, stateFile+".tmp"))
	var s State
	return err == nil && json.Unmarshal(b, &s) == nil && s.Owner == owner
}

func writeState(staging string, s State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(staging, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(staging, stateFile))
}

// Run restores job with steps, resuming what an earlier attempt of the same
// workflow run left in the staging dir.
func Run(ctx context.Context, job Job, steps Steps) (*Result, error) {
	job.Target = filepath.Clean(job.Target)
	target := job.Target
	if !filepath.IsAbs(target) {
		return nil, fmt.Errorf("%w: target %q is not an absolute path", ErrTargetNotDir, target)
	}
	if len(job.Chain) == 0 {
		return nil, errors.New("restore: empty chain")
	}
	if job.Owner.WorkflowID == "" || job.Owner.RunID == "" {
		return nil, errors.New("restore: the owner's workflow id and run id are required")
	}
	staging := StagingDir(target)
	base, inc := filepath.Join(staging, "base"), filepath.Join(staging, "inc")
	st, err := ownState(staging, job.Owner)
	if err != nil {
		return nil, err
	}
	if st.Phase == PhaseDone && job.matches(st) {
		// A retry after the move-back finished: the work is done.
		if err := os.RemoveAll(staging); err != nil {
			return nil, err
		}
		return &Result{AlreadyDone: true}, nil
	}
	if err := checkTarget(target, job.Owner, st.Phase == PhaseMoving); err != nil {
		if errors.Is(err, ErrTargetNotEmpty) && st.Phase == "" && restoredByJob(target, job) {
			// A retry after the move-back finished and the staging dir was
			// removed (the report was lost): the work is done.
			return &Result{AlreadyDone: true}, nil
		}
		return nil, err
	}
	if st.Phase == PhaseMoving {
		// This run's interrupted move-back: the target holds only what it
		// moved into it (the target was empty when it began). Start over.
		if err := clearDir(target); err != nil {
			return nil, fmt.Errorf("clear the partially restored target %s: %w", target, err)
		}
		st.Phase, st.Applied = "", 0
	}
	res := &Result{}
	resumable := job.matches(st) && (st.Phase == PhasePrepared || (st.Phase == PhaseFetching && st.Applied > 0))
	if resumable {
		res.Resumed = st.Applied
	} else {
		// Nothing reusable, or a prepare was interrupted half-way and base/
		// may be half-applied: start from the full. The chunk cache of this
		// run is kept: its chunks need no download.
		keepCache := st.Owner == job.Owner
		st = State{Owner: job.Owner, BackupID: job.BackupID, Chain: job.Chain}
		if err := checkSpace(filepath.Dir(target), job.Space); err != nil {
			return nil, err
		}
		if err := clearStaging(staging, keepCache); err != nil {
			return nil, fmt.Errorf("clear staging dir: %w", err)
		}
		if err := makeStaging(staging); err != nil {
			return nil, err
		}
		if err := writeState(staging, st); err != nil {
			return nil, err
		}
	}
	if steps.Staged != nil {
		if err := steps.Staged(filepath.Join(staging, "cache")); err != nil {
			return nil, err
		}
	}
	for i := st.Applied; i < len(job.Chain); i++ {
		st.Phase = PhaseFetching
		if err := writeState(staging, st); err != nil {
			return nil, err
		}
		dir := base
		if i > 0 {
			dir = inc
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		if err := steps.Fetch(ctx, i, dir); err != nil {
			return nil, err
		}
		st.Phase = PhasePreparing
		if err := writeState(staging, st); err != nil {
			return nil, err
		}
		incDir := ""
		if i > 0 {
			incDir = inc
		}
		if err := steps.Prepare(ctx, i, base, incDir); err != nil {
			return nil, err
		}
		if i > 0 {
			_ = os.RemoveAll(inc)
		}
		st.Applied, st.Phase = i+1, PhasePrepared
		if err := writeState(staging, st); err != nil {
			return nil, err
		}
		if steps.Applied != nil {
			steps.Applied(i)
		}
	}
	st.Phase = PhaseMoving
	if err := writeState(staging, st); err != nil {
		return nil, err
	}
	if err := steps.MoveBack(ctx, base, target); err != nil {
		return nil, err
	}
	db, err := json.Marshal(done{Owner: job.Owner, BackupID: job.BackupID, Chain: job.Chain})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(target, DoneFile), append(db, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("mark the restore done: %w", err)
	}
	st.Phase = PhaseDone
	if err := writeState(staging, st); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(staging); err != nil {
		return nil, fmt.Errorf("remove staging dir: %w", err)
	}
	return res, nil
}

// ownState returns the state of the staging dir when it belongs to owner
// (or there is none, or it is empty), and refuses a staging dir of another
// restore: it is not ours to clear.
func ownState(staging string, owner Owner) (State, error) {
	fi, err := os.Lstat(staging)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return State{}, nil
	case err != nil:
		return State{}, err
	case !fi.IsDir():
		return State{}, fmt.Errorf("%w: %s, where the restore stages its data, exists and is not a directory: remove it", ErrTargetInUse, staging)
	}
	st, found := ReadState(staging)
	if found && st.Owner == owner {
		return st, nil
	}
	if !found && (isEmpty(staging) || firstStateOf(staging, owner)) {
		return State{}, nil // created, then interrupted before its state
	}
	who := "an unknown restore"
	if st.Owner.WorkflowID != "" {
		who = st.Owner.String()
	}
	return State{}, fmt.Errorf("%w: staging dir %s belongs to %s, not to this one: if that restore is over, remove the directory (it may hold decrypted data) and run again",
		ErrTargetInUse, staging, who)
}

// Discard removes the staging dir of owner's restore into target, which
// holds downloaded and decrypted data: for a restore that was cancelled or
// finally failed. A staging dir of another restore is left alone.
func Discard(target string, owner Owner) error {
	staging := StagingDir(target)
	if _, err := os.Lstat(staging); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if st, found := ReadState(staging); !found || st.Owner != owner {
		if found || !isEmpty(staging) {
			return nil
		}
	}
	return os.RemoveAll(staging)
}

// CheckTarget applies the target-guard rules (see the package doc) for a
// restore of owner into target, clearing a datadir that a replay of the same
// run left unfinished.
func CheckTarget(target string, owner Owner) error {
	return checkTarget(filepath.Clean(target), owner, false)
}

// checkTarget is CheckTarget; ownContent says the target holds only what
// owner's move-back put there, to be cleared.
func checkTarget(target string, owner Owner, ownContent bool) error {
	fi, err := os.Stat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check target dir %s: %w", target, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s exists and is a %s: restore into a new or empty directory", ErrTargetNotDir, target, kind(fi))
	}
	if pid, ok := server.Running(target); ok {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return fmt.Errorf("%w: a server (%s, pid %d) is running on %s: Strata never stops it; stop the server, or restore into another directory",
			ErrTargetInUse, strings.TrimSpace(string(comm)), pid, target)
	}
	if ownContent {
		return nil
	}
	if mk, ok := replay.ReadMarker(target); ok {
		if !mk.Owns(owner.WorkflowID, owner.RunID) {
			who := "an unknown workflow (an older Strata)"
			if mk.WorkflowID != "" {
				who = Owner{mk.WorkflowID, mk.RunID}.String()
			}
			return fmt.Errorf("%w: %s holds a point-in-time replay of %s that did not finish; it is not this restore's to clear: remove its contents, or restore into another directory",
				ErrTargetNotEmpty, target, who)
		}
		// This run's own interrupted replay: restore again from scratch.
		if err := clearDir(target); err != nil {
			return fmt.Errorf("clear the datadir of this restore's interrupted replay: %w", err)
		}
		return nil
	}
	f, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("open target dir %s: %w", target, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read target dir %s: %w", target, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: target dir %s is not empty (it holds %q, ...): restore into a new or empty directory; Strata never overwrites a datadir", ErrTargetNotEmpty, target, names[0])
	}
	return nil
}

func kind(fi os.FileInfo) string {
	switch {
	case fi.Mode().IsRegular():
		return "regular file"
	case fi.Mode()&os.ModeSymlink != 0:
		return "symbolic link"
	}
	return "non-directory (" + fi.Mode().Type().String() + ")"
}

// makeStaging creates the staging dir 0700 (and its parents 0750), or
// tightens an existing one of this restore to 0700.
func makeStaging(staging string) error {
	if err := os.MkdirAll(filepath.Dir(staging), 0o750); err != nil {
		return fmt.Errorf("create the target's parent dir: %w", err)
	}
	if err := os.Mkdir(staging, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create staging dir %s: %w", staging, err)
	}
	return os.Chmod(staging, 0o700)
}

// clearStaging empties the staging dir, keeping its chunk cache if asked.
func clearStaging(staging string, keepCache bool) error {
	if !keepCache {
		return os.RemoveAll(staging)
	}
	entries, err := os.ReadDir(staging)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "cache" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(staging, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func isEmpty(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF)
}

// checkSpace fails early when the filesystem cannot hold the restored data.
func checkSpace(dir string, need int64) error {
	for d := dir; ; d = filepath.Dir(d) {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(d, &fs); err == nil {
			free := int64(fs.Bavail) * int64(fs.Bsize)
			want := need + need/10 + 64<<20
			if free < want {
				return fmt.Errorf("%w under %s: %d MiB free, the restore needs about %d MiB; free space or choose another target dir", ErrInsufficientSpace, d, free>>20, want>>20)
			}
			return nil
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// clearDir empties dir.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// ChainSpace estimates the disk a restore of chain needs: the full plus the
// largest incremental staged beside it, plus the largest member's chunks in
// the download cache.
func ChainSpace(chain []*manifest.Manifest) int64 {
	if len(chain) == 0 {
		return 0
	}
	need := chain[0].RawSize
	var inc, cached int64
	for i, m := range chain {
		if i > 0 {
			inc = max(inc, m.RawSize)
		}
		cached = max(cached, m.StoredSize)
	}
	return need + inc + cached
}
