package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/storage"
)

// ErrReportExists is returned (wrapped) by Write when another drill's
// report holds the key: a drill id used before for the instance.
var ErrReportExists = errors.New("a drill report with this id exists")

// Write stores the report at ReportKey. Writing the same drill's report
// again (a retried activity: the report there is of the same workflow run)
// is not an error; a report of another run there is ErrReportExists, and
// stays as it was.
func Write(ctx context.Context, b storage.Backend, r *Report) error {
	if r.Instance == "" || r.DrillID == "" {
		return errors.New("drill report without instance or drill id")
	}
	if r.FormatVersion == 0 {
		r.FormatVersion = FormatVersion
	}
	var buf bytes.Buffer
	if err := r.Encode(&buf); err != nil {
		return err
	}
	key := ReportKey(r.Instance, r.DrillID)
	err := b.Put(ctx, key, bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if errors.Is(err, storage.ErrExists) {
		old, rerr := Read(ctx, b, r.Instance, r.DrillID)
		if rerr != nil {
			return fmt.Errorf("write drill report %s: it exists, and reading it failed: %w", key, rerr)
		}
		if old.WorkflowID == r.WorkflowID && old.RunID == r.RunID {
			return nil // written by an earlier attempt of the same drill
		}
		return fmt.Errorf("%w: %s is the report of drill %s (workflow %s, run %s, %s): give the drill another id", ErrReportExists, key, old.DrillID, old.WorkflowID, old.RunID, old.Result)
	}
	if err != nil {
		return fmt.Errorf("write drill report %s: %w", key, err)
	}
	return nil
}

// ErrBadReport is returned (wrapped) by Read, and so by History, for an
// object at a report's key that is not a report this Strata reads.
var ErrBadReport = errors.New("not a drill report this Strata reads")

// Read returns one drill's report.
func Read(ctx context.Context, b storage.Backend, instance, drillID string) (*Report, error) {
	key := ReportKey(instance, drillID)
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	r, err := Decode(rc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadReport, key, err)
	}
	if r.Instance != instance || r.DrillID != drillID {
		// Copied from another instance or key: its backup ids are not this
		// instance's (ids are timestamps, and collide across instances).
		return nil, fmt.Errorf("%w: %s holds the report of drill %s of instance %s", ErrBadReport, key, r.DrillID, r.Instance)
	}
	return r, nil
}

// History returns an instance's drill reports, newest first (by start
// time, then id). An object under the drills prefix that is not a report
// fails the read, naming it.
func History(ctx context.Context, b storage.Backend, instance string) ([]*Report, error) {
	objs, err := b.List(ctx, DrillsPrefix(instance))
	if err != nil {
		return nil, err
	}
	var out []*Report
	for _, o := range objs {
		id, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, DrillsPrefix(instance)), ".json")
		if !ok || id == "" || strings.Contains(id, "/") {
			continue
		}
		r, err := Read(ctx, b, instance, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].DrillID > out[j].DrillID
	})
	return out, nil
}

// MarksBackup reports whether a failed drill condemns its backup: the
// backup's data failed — its restore found it corrupt or undecryptable or
// the prepare failed, the server did not start on it, or verifying the
// backup's own data found problems. A drill agent without the key
// encryption key of the backup (KeyNotHeld) is its configuration. A failure of the drill's machinery (no
// agent, a timeout, a cancel, a verify that could not connect) says nothing
// about the backup, and neither does a point-in-time drill that failed in
// the replay or verifying the replayed data: that is the binlog archive.
func (r *Report) MarksBackup() bool {
	if r.Passed() || r.BackupID == "" {
		return false
	}
	switch r.FailedPhase {
	case PhaseRestore:
		return markingRestoreErrors[r.ErrorType] && !r.KeyNotHeld
	case PhaseStart:
		return r.ErrorType == "ToolFailed"
	case PhaseVerify:
		return r.Target == "" && r.ErrorType == "VerificationFailed"
	}
	return false
}

// markingRestoreErrors are the error types (activities.Err*) of a restore
// that say the backup itself is bad.
var markingRestoreErrors = map[string]bool{
	"CorruptBackup": true, "DecryptFailed": true, "Unauthenticated": true, "Unencrypted": true,
	"BrokenChain": true,
}

// Failed returns, for each backup of the history whose newest drill that
// judged it (a passed drill, or a failed one that MarksBackup) failed, that
// drill's report. history is newest first, as History returns it.
func Failed(history []*Report) map[string]*Report {
	out := map[string]*Report{}
	judged := map[string]bool{}
	for _, r := range history {
		if judged[r.BackupID] || r.BackupID == "" {
			continue
		}
		switch {
		case r.Passed():
			judged[r.BackupID] = true
		case r.MarksBackup():
			judged[r.BackupID] = true
			out[r.BackupID] = r
		}
	}
	return out
}

// FutureSlack is how far past this host's clock a report's start time may
// be and still judge its backup (clocks of worker hosts differ a little).
const FutureSlack = time.Hour

// FailedBackups reads an instance's drill history and returns Failed of it.
// Reports that started more than FutureSlack after now judge nothing: the
// history is ordered by start time, so one dated in the future (a wrong
// clock, or planted by a writer of the bucket) would outrank every real
// drill to come and keep a backup that fails them unmarked.
func FailedBackups(ctx context.Context, b storage.Backend, instance string) (map[string]*Report, error) {
	h, err := History(ctx, b, instance)
	if err != nil {
		return nil, err
	}
	limit := time.Now().Add(FutureSlack)
	judging := h[:0:0]
	for _, r := range h {
		if !r.Started.After(limit) {
			judging = append(judging, r)
		}
	}
	return Failed(judging), nil
}
