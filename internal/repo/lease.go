package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/strata-backup/strata/internal/storage"
)

// A running backup holds a lease in its directory:
//
//	<instance>/backups/<backup-id>/lease/<renewed-unix-nanos>-<random>.json
//
// Objects are immutable, so a renewal stores a new lease object and then
// deletes the one it replaces; a crash in between leaves both, and the
// lease lasts until the latest Until of all of them. The partial-upload
// cleanup (retention.GCPartial) never touches a backup directory with a live
// lease. The lease is released (its objects deleted) once the manifest is
// written, and with the rest of the upload when a backup fails for good. A
// lease that was not renewed in time (a dead agent) expires, and the
// cleanup falls back to its age rule: the lease objects are objects of the
// directory, so the age counts from the last renewal.

// ErrLeaseHeld matches (with errors.Is) the failure to take a backup's lease
// because another workflow run holds a live one: that run is uploading a
// backup with the same id right now.
var ErrLeaseHeld = errors.New("backup id is being uploaded by another workflow run")

// MaxLeaseTTL bounds how long one renewal may hold a lease. A lease object
// that claims more (hand-written, or planted by a writer of the bucket) is
// not live, so it cannot keep a partial upload from the cleanup forever.
const MaxLeaseTTL = 6 * time.Hour

// maxLeaseObjectSize bounds a lease object read from the repository.
const maxLeaseObjectSize = 16 << 10

// Run identifies the workflow run a backup belongs to (Temporal's workflow
// id and run id). Its zero value is no run: nothing was recorded.
type Run struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// IsZero reports whether r names no run.
func (r Run) IsZero() bool { return r.WorkflowID == "" && r.RunID == "" }

// Same reports whether r and o name the same, known, workflow run.
func (r Run) Same(o Run) bool { return !r.IsZero() && r == o }

func (r Run) String() string {
	if r.IsZero() {
		return "(no workflow run recorded)"
	}
	return fmt.Sprintf("workflow %q run %q", r.WorkflowID, r.RunID)
}

// LeaseRecord is the content of one lease object.
type LeaseRecord struct {
	Run
	// Attempt is the activity attempt (1 for the first).
	Attempt int32 `json:"attempt"`
	// Host is the agent host uploading the backup.
	Host string `json:"host"`
	// Renewed is when the lease was last renewed (the agent's clock).
	Renewed time.Time `json:"renewed"`
	// Until is when the lease expires unless it is renewed again.
	Until time.Time `json:"until"`
}

// LiveAt reports whether the lease holds at now: it has not expired, it
// does not claim more than MaxLeaseTTL past its renewal, and its renewal is
// not more than MaxLeaseTTL ahead of now (clock skew between agents is
// tolerated up to that; a lease dated further ahead, planted or from a
// clock far off, would otherwise hold until then).
func (l LeaseRecord) LiveAt(now time.Time) bool {
	return now.Before(l.Until) && l.Until.Sub(l.Renewed) <= MaxLeaseTTL && l.Renewed.Sub(now) <= MaxLeaseTTL
}

func (l LeaseRecord) String() string {
	return fmt.Sprintf("%s, attempt %d on host %q, renewed %s, until %s", l.Run, l.Attempt, l.Host,
		l.Renewed.UTC().Format(time.RFC3339), l.Until.UTC().Format(time.RFC3339))
}

// LeasePrefix returns the prefix of a backup's lease objects:
// "<instance>/backups/<backupID>/lease/".
func LeasePrefix(instance, backupID string) string {
	return BackupPrefix(instance, backupID) + "lease/"
}

// IsLeaseKey reports whether key (a full object key) is a lease object of
// the backup.
func IsLeaseKey(instance, backupID, key string) bool {
	rest, ok := strings.CutPrefix(key, LeasePrefix(instance, backupID))
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// ReadLeases returns the lease records stored in a backup's directory. A
// lease object that is not valid JSON of a lease is skipped: it holds
// nothing (and its age still counts for the cleanup's age rule).
func (r *Repo) ReadLeases(ctx context.Context, instance, backupID string) ([]LeaseRecord, error) {
	objs, err := r.readLeaseObjects(ctx, instance, backupID)
	if err != nil {
		return nil, err
	}
	out := make([]LeaseRecord, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.rec)
	}
	return out, nil
}

// leaseObject is a lease record and the key of its object.
type leaseObject struct {
	key string
	rec LeaseRecord
}

// readLeaseObjects returns the valid lease objects of a backup.
func (r *Repo) readLeaseObjects(ctx context.Context, instance, backupID string) ([]leaseObject, error) {
	if err := checkIDs(instance, backupID); err != nil {
		return nil, fmt.Errorf("read lease: %w", err)
	}
	objs, err := r.b.List(ctx, LeasePrefix(instance, backupID))
	if err != nil {
		return nil, fmt.Errorf("read lease of backup %q of instance %q: %w", backupID, instance, err)
	}
	out := make([]leaseObject, 0, len(objs))
	for _, o := range objs {
		if !IsLeaseKey(instance, backupID, o.Key) {
			continue
		}
		rec, err := r.readLease(ctx, o.Key)
		if errors.Is(err, storage.ErrNotFound) {
			continue // replaced by a renewal since listed
		}
		if errors.Is(err, errBadLease) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read lease of backup %q of instance %q: %w", backupID, instance, err)
		}
		out = append(out, leaseObject{key: o.Key, rec: rec})
	}
	return out, nil
}

var errBadLease = errors.New("not a lease object")

func (r *Repo) readLease(ctx context.Context, key string) (LeaseRecord, error) {
	rc, err := r.b.Get(ctx, key)
	if err != nil {
		return LeaseRecord{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxLeaseObjectSize+1))
	if err != nil {
		return LeaseRecord{}, fmt.Errorf("%s: %w", key, err)
	}
	var rec LeaseRecord
	if len(data) > maxLeaseObjectSize || json.Unmarshal(data, &rec) != nil || rec.Until.IsZero() {
		return LeaseRecord{}, fmt.Errorf("%s: %w", key, errBadLease)
	}
	return rec, nil
}

// LiveLease returns the live lease among recs at now that lasts longest,
// and whether there is one.
func LiveLease(recs []LeaseRecord, now time.Time) (LeaseRecord, bool) {
	var best LeaseRecord
	found := false
	for _, l := range recs {
		if l.LiveAt(now) && (!found || l.Until.After(best.Until)) {
			best, found = l, true
		}
	}
	return best, found
}

// Lease is the lease a running backup holds on its directory.
type Lease struct {
	r                  *Repo
	instance, backupID string
	ttl                time.Duration

	mu       sync.Mutex
	rec      LeaseRecord
	key      string // the current lease object
	released bool
}

// AcquireLease takes the lease of a backup for holder (its Run, Attempt and
// Host; Renewed and Until are set here) for ttl from now, storing a lease
// object. A live lease of the same workflow run (an earlier attempt, which
// Temporal has given up on) is taken over. A live lease of another run is
// refused with an error wrapping ErrLeaseHeld that names the holder, also
// when it appears while this lease is being stored (the lease stored is
// then withdrawn). Expired lease objects and those taken over are deleted;
// another run's live lease never is.
func (r *Repo) AcquireLease(ctx context.Context, instance, backupID string, holder LeaseRecord, ttl time.Duration, now time.Time) (*Lease, error) {
	if err := checkIDs(instance, backupID); err != nil {
		return nil, fmt.Errorf("acquire lease: %w", err)
	}
	if ttl <= 0 || ttl > MaxLeaseTTL {
		return nil, fmt.Errorf("acquire lease of backup %q: ttl %v is out of range (0, %v]", backupID, ttl, MaxLeaseTTL)
	}
	recs, err := r.ReadLeases(ctx, instance, backupID)
	if err != nil {
		return nil, err
	}
	for _, l := range recs {
		if l.LiveAt(now) && !l.Run.Same(holder.Run) {
			return nil, fmt.Errorf("%w: backup %q of instance %q is leased by %s", ErrLeaseHeld, backupID, instance, l)
		}
	}
	l := &Lease{r: r, instance: instance, backupID: backupID, ttl: ttl, rec: holder}
	if err := l.Renew(ctx, now); err != nil {
		return nil, err
	}
	// Storage has no compare-and-swap: another run may have stored its
	// lease between the read above and the write. Read again; if another
	// run's live lease is there now, withdraw ours (both may withdraw,
	// neither goes on while the other may), else remove what is expired or
	// ours from earlier attempts.
	objs, err := r.readLeaseObjects(ctx, instance, backupID)
	if err != nil {
		return nil, err
	}
	cur := l.Record()
	var stale []string
	for _, o := range objs {
		if o.key == l.key {
			continue
		}
		if o.rec.LiveAt(now) && !o.rec.Run.Same(cur.Run) {
			l.withdraw(ctx)
			return nil, fmt.Errorf("%w: backup %q of instance %q is leased by %s", ErrLeaseHeld, backupID, instance, o.rec)
		}
		stale = append(stale, o.key)
	}
	for _, key := range stale {
		if err := r.b.Delete(ctx, key); err != nil {
			return nil, fmt.Errorf("lease of backup %q of instance %q: delete stale lease object: %w", backupID, instance, err)
		}
	}
	return l, nil
}

// Record returns the current lease record.
func (l *Lease) Record() LeaseRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// Due reports whether the lease should be renewed at now: a third of its
// ttl has passed since the last renewal, and it was not released.
func (l *Lease) Due(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.released && !now.Before(l.rec.Renewed.Add(l.ttl/3))
}

// Renew extends the lease to now + ttl: it stores a new lease object, then
// deletes the previous one. If the delete fails, both remain (the lease
// lasts until the later Until) and the error is returned.
func (l *Lease) Renew(ctx context.Context, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return fmt.Errorf("renew lease of backup %q of instance %q: it was released", l.backupID, l.instance)
	}
	rec := l.rec
	rec.Renewed = now.UTC()
	rec.Until = rec.Renewed.Add(l.ttl)
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	key := fmt.Sprintf("%s%020d-%s.json", LeasePrefix(l.instance, l.backupID), rec.Renewed.UnixNano(), hex.EncodeToString(rnd[:]))
	if err := l.r.b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("renew lease of backup %q of instance %q: %w", l.backupID, l.instance, err)
	}
	prev := l.key
	l.rec, l.key = rec, key
	if prev != "" {
		if err := l.r.b.Delete(ctx, prev); err != nil {
			return fmt.Errorf("renew lease of backup %q of instance %q: delete the previous lease object: %w", l.backupID, l.instance, err)
		}
	}
	return nil
}

// withdraw gives up a lease just stored: it deletes its own object only.
func (l *Lease) withdraw(ctx context.Context) {
	l.mu.Lock()
	l.released = true
	key := l.key
	l.mu.Unlock()
	_ = l.r.b.Delete(ctx, key)
}

// Release releases the lease: it deletes every lease object of the backup,
// and later renewals fail (a heartbeat that fires after the release stores
// nothing).
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	l.released = true
	l.mu.Unlock()
	return l.r.DeleteLeases(ctx, l.instance, l.backupID)
}

// DeleteLeases deletes every lease object of a backup: its lease is
// released. It is called once the manifest is written.
func (r *Repo) DeleteLeases(ctx context.Context, instance, backupID string) error {
	if err := checkIDs(instance, backupID); err != nil {
		return fmt.Errorf("delete lease: %w", err)
	}
	objs, err := r.b.List(ctx, LeasePrefix(instance, backupID))
	if err != nil {
		return fmt.Errorf("release lease of backup %q of instance %q: %w", backupID, instance, err)
	}
	for _, o := range objs {
		if err := r.b.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("release lease of backup %q of instance %q: %w", backupID, instance, err)
		}
	}
	return nil
}
