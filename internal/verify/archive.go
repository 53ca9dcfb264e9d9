package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
)

// ArchiveOptions says how Archive checks the binlog archive.
type ArchiveOptions struct {
	// Keys, when set, decrypts encrypted segments and checks the MAC of
	// their index records; without it, their stored bytes are checked
	// (size, sha256) but not their content.
	Keys *crypt.Keyring
	// Encrypted says the instance has encryption enabled: a segment that
	// is not encrypted, or (with Keys) whose record has no MAC, is a
	// problem unless AllowUnencrypted.
	Encrypted        bool
	AllowUnencrypted bool
}

// Archive reads back every archived binlog segment behind every recovery
// window of instance and adds what it finds to rep: a segment whose data
// object is missing, whose size or sha256 does not match its index record,
// that does not decrypt or decompress to the recorded length, or whose
// index record does not authenticate. An index record that is itself
// invalid is a problem naming it (the archive cannot be read past it).
// An error is returned only when the repository cannot be read or ctx is
// done.
func Archive(ctx context.Context, rp *repo.Repo, instance string, opt ArchiveOptions, rep *Report) error {
	st := &binlog.Store{B: rp.Backend(), Instance: instance, Keys: opt.Keys, Encrypt: opt.Encrypted, AllowUnencrypted: opt.AllowUnencrypted, CheckAllData: true}
	ix, err := st.ReadIndex(ctx)
	if errors.Is(err, binlog.ErrCorrupt) {
		rep.Problems = append(rep.Problems, Problem{Chunk: -1, Key: instance + "/binlogs/index/", What: err.Error()})
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify archive: %w", err)
	}
	backups, _, err := rp.ReadManifests(ctx, instance) // invalid ones are reported by Backups
	if err != nil {
		return fmt.Errorf("verify archive: %w", err)
	}
	for _, s := range ix.Missing {
		rep.Problems = append(rep.Problems, Problem{Chunk: -1, Key: st.DataKey(&s),
			What: fmt.Sprintf("the data object of segment %d (%s:%d-%d) is missing: point-in-time recovery across it is impossible", s.Seq, s.File, s.Start, s.End)})
	}
	byID := map[string]*manifest.Manifest{}
	for _, b := range backups {
		byID[b.BackupID] = b
	}
	windows := binlog.Windows(backups, ix)
	rep.Windows = len(windows)
	seen := map[uint64]bool{}
	var segs []binlog.Segment
	for _, w := range windows {
		b := byID[w.FromBackup]
		covering, err := ix.Covering(b.BinlogFile, uint32(b.BinlogPos))
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Chunk: -1, Key: instance + "/binlogs/index/", What: fmt.Sprintf("window from backup %s: %v", b.BackupID, err)})
			continue
		}
		for _, seg := range covering {
			if !seen[seg.Seq] {
				seen[seg.Seq] = true
				segs = append(segs, seg)
			}
		}
	}
	errs, err := checkSegments(ctx, st, segs, opt)
	if err != nil {
		return err
	}
	for i := range segs {
		if errs[i] != nil {
			rep.Problems = append(rep.Problems, Problem{Chunk: -1, Key: st.RecordKey(&segs[i]), What: errs[i].Error()})
			continue
		}
		rep.Segments++
		rep.SegmentBytes += segs[i].StoredSize
	}
	return nil
}

// ArchiveReaders is how many segments, or packs of segments, Archive reads
// at once: reads of small objects are bound by the storage's latency, not
// by bandwidth.
const ArchiveReaders = 8

// checkSegments checks segs with ArchiveReaders readers at once, the
// segments of one pack by one reader in order (a pack is read once), and
// returns the problem of each segment (nil: sound). The error is a fault
// of reading (a retry may succeed) or ctx's.
func checkSegments(ctx context.Context, st *binlog.Store, segs []binlog.Segment, opt ArchiveOptions) ([]error, error) {
	var units [][2]int // [from, to) of segs
	for i := 0; i < len(segs); {
		j := i + 1
		for p := segs[i].PackKey(); p != "" && j < len(segs) && segs[j].PackKey() == p; j++ {
		}
		units = append(units, [2]int{i, j})
		i = j
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(segs))
	var (
		mu    sync.Mutex
		fault error
		wg    sync.WaitGroup
	)
	next := make(chan [2]int)
	for w := 0; w < min(ArchiveReaders, len(units)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				for i := u[0]; i < u[1]; i++ {
					err := checkSegment(ctx, st, &segs[i], opt)
					if err != nil && !isProblem(err) {
						mu.Lock()
						if fault == nil {
							fault = fmt.Errorf("verify archive: segment %d: %w", segs[i].Seq, err) // a storage fault: retry
						}
						mu.Unlock()
						cancel()
						break
					}
					errs[i] = err
				}
			}
		}()
	}
	for _, u := range units {
		if ctx.Err() != nil {
			break
		}
		next <- u
	}
	close(next)
	wg.Wait()
	if fault != nil {
		return nil, fault
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify archive: %w", err)
	}
	return errs, nil
}

// checkSegment reads one segment back as a replay would (with keys), or
// checks what can be checked without them.
func checkSegment(ctx context.Context, st *binlog.Store, seg *binlog.Segment, opt ArchiveOptions) error {
	if opt.Keys != nil {
		_, err := st.ReadSegment(ctx, seg)
		return err
	}
	if seg.KeyRef == "" && opt.Encrypted && !opt.AllowUnencrypted {
		return fmt.Errorf("%w: instance %s has encryption enabled but segment %d (%s:%d-%d) is stored unencrypted", binlog.ErrUnencrypted, st.Instance, seg.Seq, seg.File, seg.Start, seg.End)
	}
	return st.CheckStored(ctx, seg)
}

// isProblem says whether a segment's error is a fault of the archive
// rather than of reading it now.
func isProblem(err error) bool {
	for _, e := range []error{binlog.ErrCorrupt, binlog.ErrUnencrypted, binlog.ErrUnauthenticated, crypt.ErrDecrypt,
		crypt.ErrNotEncrypted, repo.ErrNoUsableKey, repo.ErrInvalidKeyObject} {
		if errors.Is(err, e) {
			return true
		}
	}
	return crypt.IsKeyError(err)
}
