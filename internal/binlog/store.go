package binlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
)

// Segment is the index record of one archived piece of a binlog file: the
// events from Start to End (byte positions in File).
type Segment struct {
	Seq       uint64    `json:"seq"`
	File      string    `json:"file"`
	Start     uint32    `json:"start"`
	End       uint32    `json:"end"`
	FirstTime time.Time `json:"first_time"` // timestamp of the first event (binlog resolution: 1 s)
	LastTime  time.Time `json:"last_time"`
	FirstGTID string    `json:"first_gtid,omitempty"` // first transaction that starts in the segment
	LastGTID  string    `json:"last_gtid,omitempty"`
	// DataKey is the segment's data object, relative to the archive
	// (empty for segments named by their number alone).
	DataKey string `json:"data_key,omitempty"`
	// Next names the following binlog file when this segment ends its file
	// (with a rotate event or at a server stop).
	Next     string `json:"next,omitempty"`
	ServerID uint32 `json:"server_id"`
	Identity string `json:"identity"` // server identity when archived (uuid or server_id/domain)
	// Flavor is the server's flavor as the archive run that wrote the
	// segment detected it. Records from before it was recorded have none
	// and are MariaDB's (FlavorName): Strata archived only MariaDB then.
	Flavor flavor.Name `json:"flavor,omitempty"`
	// Executed is, for MySQL, the server's executed GTID set at the end of
	// the segment: the file's Previous_gtids and every GTID since. Gaps
	// and PITR targets are decided on it. Empty for MariaDB, and for a
	// segment of a file whose Previous_gtids the run did not see.
	Executed   string    `json:"executed,omitempty"`
	Events     int       `json:"events"`
	RawSize    int64     `json:"raw_size"`
	StoredSize int64     `json:"stored_size"`
	SHA256     string    `json:"sha256"` // of the stored (compressed, maybe encrypted) bytes
	ArchivedAt time.Time `json:"archived_at"`
	// KeyRef names the data key the segment is encrypted with: its wrapped
	// forms are under <instance>/binlogs/keys/<key_ref>/. Empty: not
	// encrypted.
	KeyRef string `json:"key_ref,omitempty"`
	// MAC authenticates the record of an encrypted segment: HMAC-SHA256,
	// keyed by crypt.AuthKey of the run's data key, of the record without
	// it (see macMessage). Only a holder of a key encryption key that wraps
	// the data key can make it. Empty in records of older versions.
	MAC []byte `json:"mac,omitempty"`

	// record is the object the record was read from (its roll-up's, or
	// its own), pack where its bytes are when they are packed: set by
	// ReadIndex, never stored.
	record string
	pack   *packLoc
}

// FlavorName is the flavor of the server the segment was archived from;
// a record without one is MariaDB's.
func (s *Segment) FlavorName() flavor.Name {
	if s.Flavor == "" {
		return flavor.MariaDB
	}
	return s.Flavor
}

// Gap records a stretch of binlog that is not in the archive: PITR across
// it is impossible.
type Gap struct {
	// BeforeSeq is the first segment after the gap.
	BeforeSeq  uint64    `json:"before_seq"`
	LastFile   string    `json:"last_file,omitempty"` // last archived position before the gap
	LastPos    uint32    `json:"last_pos,omitempty"`
	LastTime   time.Time `json:"last_time,omitempty"`
	ResumeFile string    `json:"resume_file"` // where archiving resumed
	ResumePos  uint32    `json:"resume_pos"`
	Reason     string    `json:"reason"`
	DetectedAt time.Time `json:"detected_at"`
	// MissingGTIDs is, for MySQL, the GTID set the server no longer had
	// when archiving resumed after the gap (its gtid_purged less what the
	// archive holds): the transactions no PITR can replay.
	MissingGTIDs string `json:"missing_gtids,omitempty"`
	// MissingData is set on a gap that ReadIndex found rather than read: a
	// segment whose data object (this key) is missing. It is never stored.
	MissingData string `json:"missing_data,omitempty"`
}

// ErrCorrupt is wrapped when an archived segment does not match its index
// record (size, sha256 or length).
var ErrCorrupt = errors.New("binlog segment is corrupt")

// Store reads and writes an instance's binlog archive in a repository.
//
// With Encrypt and Keys, the segments it writes are encrypted (AES-256-GCM,
// crypt.ChunkCipher) with one data key per Store, that is per archive run:
// the data key is created at the first segment, stored wrapped by the
// keyring's current key under <instance>/binlogs/keys/<key-ref>/, and each
// segment's index record names its key ref. Reading an encrypted segment
// needs a Keys that can unwrap its data key. The sha256 and stored size in
// the index are those of the stored (encrypted) bytes, so the archive is
// checked without a key, and decryption restores the events byte for byte.
type Store struct {
	B        storage.Backend
	Instance string
	// Keys unwraps the data keys of encrypted segments and, with Encrypt,
	// wraps the data key of the segments this Store writes (nil: no keys).
	Keys *crypt.Keyring
	// Encrypt encrypts the segments this Store writes; it needs Keys. It
	// also says that the instance has encryption enabled: ReadSegment then
	// refuses segments that are not encrypted (ErrUnencrypted) and records
	// without a MAC (ErrUnauthenticated), unless AllowUnencrypted.
	Encrypt bool
	// AllowUnencrypted accepts, on an instance with encryption enabled,
	// segments archived unencrypted and records written without a MAC (old
	// data from before encryption or authentication). A record whose MAC
	// is wrong is refused regardless.
	AllowUnencrypted bool
	// CheckAllData makes ReadIndex check that the data object of every
	// segment exists (one listing of data/, a request per 1,000 objects),
	// not only those of the open tail: a segment whose data is missing then
	// ends its recovery window wherever it is. The catalog's views of the
	// windows (ls, archive status, verify) set it; resume and PITR planning
	// do not, and stay bounded by the roll-ups and the tail (a replay still
	// fails on a missing data object, naming it).
	CheckAllData bool
	// PackSize is the size Compact keeps packs under (0: PackTargetSize).
	PackSize int64
	// IndexOnly makes ReadIndex read the index alone: no listing of the
	// packs or of the data objects, so Missing stays empty and Packs is
	// not set; a missing data object is found by verify and by a replay.
	// For views whose gaps come from the index records (the metrics).
	IndexOnly bool
	// Cache, when set, keeps the index objects ReadIndex reads (roll-ups,
	// individual records, gap records: immutable once written) by key, so
	// that a later ReadIndex fetches only those written since. Each
	// ReadIndex (or ReadTail) drops those it did not read: deleted since, or
	// with ReadTail the roll-ups before the newest.
	Cache *IndexCache

	mu      sync.Mutex
	runID   string                 // names this Store's data objects
	writing *segmentKey            // the data key of this run's segments
	reading map[string]*segmentKey // data keys of segments read, by key ref
	located map[uint64]*packLoc    // packed segments found by findPack
	packs   packCache
}

// segmentKey is the cipher of one archive run's data key.
type segmentKey struct {
	ref     string
	cipher  *crypt.ChunkCipher
	authKey []byte // authenticates the index records of the run
}

// segmentCipher returns the cipher of the data key ref, bound to the
// instance and the ref.
func (s *Store) segmentCipher(ref string, dataKey []byte) (*crypt.ChunkCipher, error) {
	return crypt.NewChunkCipher(dataKey, "binlog/"+s.Instance+"/"+ref)
}

// writeKey returns this run's data key, creating and storing it on first
// use.
func (s *Store) writeKey(ctx context.Context) (*segmentKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writing != nil {
		return s.writing, nil
	}
	if s.Keys == nil {
		return nil, fmt.Errorf("binlog archive of %s: encryption is enabled but no key encryption key is configured: set encryption.key_file or encryption.key_env", s.Instance)
	}
	dk, err := crypt.NewDataKey()
	if err != nil {
		return nil, err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	ref := time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
	kekID, wrapped, err := s.Keys.Wrap(dk)
	if err != nil {
		return nil, err
	}
	if err := repo.BinlogKeys(s.B, s.Instance, ref).Write(ctx, repo.KeyObject{KEKID: kekID, Wrapped: wrapped}); err != nil {
		return nil, fmt.Errorf("store the data key of the binlog archive: %w", err)
	}
	c, err := s.segmentCipher(ref, dk)
	if err != nil {
		return nil, err
	}
	s.writing = &segmentKey{ref: ref, cipher: c, authKey: crypt.AuthKey(dk, authPurpose(s.Instance, ref))}
	return s.writing, nil
}

// readKey returns the cipher of key ref, unwrapping its data key with Keys.
func (s *Store) readKey(ctx context.Context, ref string) (*segmentKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writing != nil && s.writing.ref == ref {
		return s.writing, nil
	}
	if k := s.reading[ref]; k != nil {
		return k, nil
	}
	dk, _, err := repo.BinlogKeys(s.B, s.Instance, ref).Unwrap(ctx, s.Keys)
	if err != nil {
		return nil, err
	}
	c, err := s.segmentCipher(ref, dk)
	if err != nil {
		return nil, err
	}
	if s.reading == nil {
		s.reading = map[string]*segmentKey{}
	}
	k := &segmentKey{ref: ref, cipher: c, authKey: crypt.AuthKey(dk, authPurpose(s.Instance, ref))}
	s.reading[ref] = k
	return k, nil
}

func (s *Store) prefix() string            { return s.Instance + "/binlogs/" }
func (s *Store) dataKey(seq uint64) string { return fmt.Sprintf("%sdata/%012d.zst", s.prefix(), seq) }

// runDataKey names a segment's data object after the run that writes it, so
// that two archivers that briefly overlap (a retry while a cut-off attempt
// still runs) never write the same object: the index record decides.
func (s *Store) runDataKey(seq uint64) string {
	s.mu.Lock()
	if s.runID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		s.runID = hex.EncodeToString(b[:])
	}
	id := s.runID
	s.mu.Unlock()
	return fmt.Sprintf("%sdata/%012d-%s.zst", s.prefix(), seq, id)
}

// ErrConflict is returned when another archiver wrote the same segment
// number first: this run must stop and the next resumes after it.
var ErrConflict = errors.New("another archiver wrote this segment first")

// segmentDataKey is where a segment's data is.
func (s *Store) segmentDataKey(seg *Segment) string {
	if seg.DataKey != "" {
		return s.prefix() + seg.DataKey
	}
	return s.dataKey(seg.Seq)
}
func (s *Store) indexKey(seq uint64) string {
	return fmt.Sprintf("%sindex/%012d.json", s.prefix(), seq)
}
func (s *Store) gapKey(seq uint64) string { return fmt.Sprintf("%sgaps/%012d.json", s.prefix(), seq) }

var (
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
)

// WriteSegment stores the segment's events, then its index record: a
// segment exists once its index record does. seg.Seq, File, Start, End and
// the event fields must be set; sizes and checksum are filled in.
func (s *Store) WriteSegment(ctx context.Context, seg *Segment, events []byte) error {
	stored := encoder.EncodeAll(events, nil)
	seg.KeyRef, seg.MAC = "", nil
	var k *segmentKey
	if s.Encrypt {
		var err error
		if k, err = s.writeKey(ctx); err != nil {
			return fmt.Errorf("write binlog segment %d: %w", seg.Seq, err)
		}
		// Deterministic: a retried write of the segment stores the same bytes.
		stored = k.cipher.SealDeterministic(nil, stored, seg.Seq)
		seg.KeyRef = k.ref
	}
	sum := sha256.Sum256(stored)
	seg.RawSize, seg.StoredSize, seg.SHA256 = int64(len(events)), int64(len(stored)), hex.EncodeToString(sum[:])
	key := s.runDataKey(seg.Seq)
	seg.DataKey = strings.TrimPrefix(key, s.prefix())
	if err := seg.Validate(); err != nil {
		return fmt.Errorf("write binlog segment %d: %w", seg.Seq, err)
	}
	if k != nil {
		msg, err := macMessage(seg)
		if err != nil {
			return err
		}
		seg.MAC = crypt.MAC(k.authKey, msg)
	}
	if err := s.put(ctx, key, stored); err != nil {
		return fmt.Errorf("write binlog segment %d: %w", seg.Seq, err)
	}
	b, err := json.Marshal(seg)
	if err != nil {
		return err
	}
	if err := s.put(ctx, s.indexKey(seg.Seq), b); errors.Is(err, storage.ErrExists) {
		_ = s.B.Delete(ctx, key)
		return fmt.Errorf("segment %d: %w", seg.Seq, ErrConflict)
	} else if err != nil {
		return fmt.Errorf("write index of binlog segment %d: %w", seg.Seq, err)
	}
	return nil
}

// put writes an object; an identical object already there (a retried
// write) counts as success.
func (s *Store) put(ctx context.Context, key string, b []byte) error {
	err := s.B.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
	if errors.Is(err, storage.ErrExists) {
		old, rerr := s.getLimited(ctx, key, int64(len(b)))
		if rerr == nil && bytes.Equal(old, b) {
			return nil
		}
	}
	return err
}

// getLimited reads an object of at most limit bytes; a larger one is
// corrupt (its record says otherwise, or it is no record).
func (s *Store) getLimited(ctx context.Context, key string, limit int64) ([]byte, error) {
	r, err := s.B.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, key, limit)
	}
	return b, nil
}

// WriteGap records a gap. A gap is recorded once: when a retried run finds
// the same gap again, the first record stands.
func (s *Store) WriteGap(ctx context.Context, g *Gap) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	err = s.B.Put(ctx, s.gapKey(g.BeforeSeq), bytes.NewReader(b), int64(len(b)))
	if errors.Is(err, storage.ErrExists) {
		return nil
	}
	return err
}

// Index is the archive's catalog: every segment in order and every gap.
type Index struct {
	Segments []Segment
	Gaps     []Gap
	// Missing lists the segments whose data object is missing (each also
	// has a gap with MissingData). Only individual records (the open tail)
	// are checked: a roll-up is written after its data objects were seen,
	// and one deleted since is found by verify and by ReadSegment.
	Missing []Segment
	// Rollups are the archive's index roll-ups, ascending (see RollUp).
	Rollups []RollupRange
	// Packs are the archive's packs (compacted data objects), ascending
	// (see Compact). The segments they hold have them attached.
	Packs []PackRange
	// stale are individual records inside a roll-up, not read, left by a
	// roll-up that stopped before deleting them.
	stale []string
}

// Last returns the newest segment, or nil.
func (ix *Index) Last() *Segment {
	if len(ix.Segments) == 0 {
		return nil
	}
	return &ix.Segments[len(ix.Segments)-1]
}

// ReadIndex reads the archive's index: its roll-ups, then the individual
// records that no roll-up holds, and the gaps. It makes O(roll-ups + open
// tail + gaps) requests. Every record and roll-up is validated
// (DecodeSegment, DecodeRollup, DecodeGap) and must be stored under the
// name of its own number or range: one that is not fails with an error
// wrapping ErrCorrupt that names its object. A roll-up is authenticated
// when the Store has Keys (authenticateRollup). A segment whose data object
// is missing is listed in Missing and ends its run there: ReadIndex adds a
// gap (MissingData set) before it, and Runs leaves it out.
func (s *Store) ReadIndex(ctx context.Context) (*Index, error) { return s.readIndex(ctx, false) }

// ReadTail reads what an archiver needs to resume: the newest roll-up and
// the individual records after the roll-ups, and the gaps; the other
// roll-ups are listed (Rollups) but not read. Its Last is the archive's.
func (s *Store) ReadTail(ctx context.Context) (*Index, error) { return s.readIndex(ctx, true) }

func (s *Store) readIndex(ctx context.Context, newestOnly bool) (*Index, error) {
	s.Cache.begin()
	ix := &Index{}
	rollups, err := s.listRollups(ctx)
	if err != nil {
		return nil, err
	}
	ix.Rollups = rollups
	bySeq := map[uint64]int{}
	var read []RollupRange // validated and authenticated
	newest := -1
	for i, rr := range rollups {
		if newest < 0 || rr.LastSeq > rollups[newest].LastSeq {
			newest = i
		}
	}
	var toRead []RollupRange
	for i, rr := range rollups {
		if !newestOnly || i == newest {
			toRead = append(toRead, rr)
		}
	}
	got := make([]*Rollup, len(toRead))
	errs := inParallel(len(toRead), func(i int) (err error) {
		got[i], err = s.readRollup(ctx, toRead[i])
		return err
	})
	for i, rr := range toRead {
		r, err := got[i], errs[i]
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since listed (pruned)
		}
		if err != nil {
			return nil, err
		}
		read = append(read, rr)
		for _, seg := range r.Segments {
			if j, ok := bySeq[seg.Seq]; ok {
				// Two roll-ups overlap: both copies of a record are the same.
				a, _ := json.Marshal(&ix.Segments[j])
				b, _ := json.Marshal(&seg)
				if !bytes.Equal(a, b) {
					return nil, fmt.Errorf("binlog index roll-up %s: %w: its record of segment %d differs from another roll-up's", rr.Key, ErrCorrupt, seg.Seq)
				}
				continue
			}
			bySeq[seg.Seq] = len(ix.Segments)
			seg.record = rr.Key
			ix.Segments = append(ix.Segments, seg)
		}
	}
	objs, err := s.B.List(ctx, IndexPrefix(s.Instance))
	if err != nil {
		return nil, fmt.Errorf("list binlog index: %w", err)
	}
	tail := map[uint64]bool{}
	var records []string
	for _, o := range objs {
		if seq, ok := s.indexSeq(o.Key); ok && covered(rollups, seq) {
			if covered(read, seq) {
				// A roll-up read holds it: RollUp may delete it. (One listed
				// but not read may be planted: its records are only skipped.)
				ix.stale = append(ix.stale, o.Key)
			}
			continue
		}
		records = append(records, o.Key)
	}
	segs := make([]*Segment, len(records))
	errs = inParallel(len(records), func(i int) error {
		b, err := s.getIndexObject(ctx, records[i], maxRecordSize)
		if err != nil {
			return err
		}
		segs[i], err = DecodeSegment(b)
		return err
	})
	for i, key := range records {
		seg, err := segs[i], errs[i]
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since listed (pruned or rolled up)
		}
		if err != nil {
			return nil, fmt.Errorf("binlog index record %s: %w", key, err)
		}
		if key != s.indexKey(seg.Seq) {
			return nil, fmt.Errorf("binlog index record %s: %w: it describes segment %d, whose record is %s", key, ErrCorrupt, seg.Seq, s.indexKey(seg.Seq))
		}
		tail[seg.Seq] = true
		seg.record = key
		ix.Segments = append(ix.Segments, *seg)
	}
	gaps, err := s.B.List(ctx, s.prefix()+"gaps/")
	if err != nil {
		return nil, err
	}
	for _, o := range gaps {
		b, err := s.getIndexObject(ctx, o.Key, maxRecordSize)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("binlog gap record %s: %w", o.Key, err)
		}
		g, err := DecodeGap(b)
		if err != nil {
			return nil, fmt.Errorf("binlog gap record %s: %w", o.Key, err)
		}
		if o.Key != s.gapKey(g.BeforeSeq) {
			return nil, fmt.Errorf("binlog gap record %s: %w: it describes the gap before segment %d, whose record is %s", o.Key, ErrCorrupt, g.BeforeSeq, s.gapKey(g.BeforeSeq))
		}
		ix.Gaps = append(ix.Gaps, *g)
	}
	sort.Slice(ix.Segments, func(i, j int) bool { return ix.Segments[i].Seq < ix.Segments[j].Seq })
	sort.SliceStable(ix.Gaps, func(i, j int) bool { return ix.Gaps[i].BeforeSeq < ix.Gaps[j].BeforeSeq })
	if s.IndexOnly {
		s.Cache.end()
		return ix, nil
	}
	// Packs are written before the data objects they hold are deleted, and
	// data objects before their records: listed in this order after the
	// records, every segment's bytes are in a pack listed or a data object
	// listed, unless they were deleted.
	if ix.Packs, err = s.listPacks(ctx); err != nil {
		return nil, err
	}
	s.attachPacks(ix.Segments, ix.Packs)
	if err := s.checkData(ctx, ix, tail, s.CheckAllData && !newestOnly); err != nil {
		return nil, err
	}
	s.Cache.end()
	return ix, nil
}

// IndexCache keeps the index objects of one archive that ReadIndex read,
// by key (see Store.Cache). It is used by one ReadIndex at a time.
type IndexCache struct {
	mu   sync.Mutex
	objs map[string][]byte
	used map[string]bool // read or found by the current ReadIndex
}

func (c *IndexCache) begin() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used = map[string]bool{}
}

// end drops the objects the ReadIndex that began did not use (deleted).
func (c *IndexCache) end() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.objs {
		if !c.used[k] {
			delete(c.objs, k)
		}
	}
}

// Len is the number of objects held.
func (c *IndexCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.objs)
}

// getIndexObject reads an index object of at most limit bytes, from Cache
// when it holds it.
func (s *Store) getIndexObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	c := s.Cache
	if c != nil {
		c.mu.Lock()
		b, ok := c.objs[key]
		if ok {
			c.used[key] = true
		}
		c.mu.Unlock()
		if ok {
			return b, nil
		}
	}
	b, err := s.getLimited(ctx, key, limit)
	if err != nil || c == nil {
		return b, err
	}
	c.mu.Lock()
	if c.objs == nil {
		c.objs = map[string][]byte{}
	}
	if c.used == nil {
		c.used = map[string]bool{}
	}
	c.objs[key], c.used[key] = b, true
	c.mu.Unlock()
	return b, nil
}

// checkData lists the data objects of the segments of ix that no pack
// holds: those of tail (the individual records), or with all every one,
// under the longest key prefix their numbers share. A segment whose data
// object is not listed is added to Missing, with a gap before it. One that
// a roll-up holds may have been packed since the packs were listed: the
// packs are listed again before it counts as missing.
func (s *Store) checkData(ctx context.Context, ix *Index, tail map[uint64]bool, all bool) error {
	var check []int
	for i := range ix.Segments {
		if ix.Segments[i].pack == nil && (all || tail[ix.Segments[i].Seq]) {
			check = append(check, i)
		}
	}
	if len(check) == 0 {
		return nil
	}
	lo, hi := ix.Segments[check[0]].Seq, ix.Segments[check[len(check)-1]].Seq
	data, err := s.B.List(ctx, s.prefix()+"data/"+commonPrefix(fmt.Sprintf("%012d", lo), fmt.Sprintf("%012d", hi)))
	if err != nil {
		return fmt.Errorf("list binlog data: %w", err)
	}
	have := make(map[string]bool, len(data))
	for _, o := range data {
		have[o.Key] = true
	}
	var missing []int
	for _, i := range check {
		if !have[s.segmentDataKey(&ix.Segments[i])] {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		// Rolled up and packed since they were read? The roll-ups and
		// packs written since are listed after the data: what they hold
		// is not missing.
		if err := s.rereadRollups(ctx, ix, missing); err != nil {
			return err
		}
		if ix.Packs, err = s.listPacks(ctx); err != nil {
			return err
		}
		s.attachPacks(ix.Segments, ix.Packs)
	}
	for _, i := range missing {
		seg := ix.Segments[i]
		if seg.pack != nil {
			continue
		}
		key := s.segmentDataKey(&seg)
		ix.Missing = append(ix.Missing, seg)
		ix.Gaps = append(ix.Gaps, Gap{BeforeSeq: seg.Seq, LastFile: seg.File, LastPos: seg.Start, LastTime: seg.FirstTime,
			ResumeFile: seg.File, ResumePos: seg.End, MissingData: key,
			Reason: fmt.Sprintf("the data object %s of segment %d (%s:%d-%d) is missing and no pack holds it", key, seg.Seq, seg.File, seg.Start, seg.End)})
	}
	sort.SliceStable(ix.Gaps, func(i, j int) bool { return ix.Gaps[i].BeforeSeq < ix.Gaps[j].BeforeSeq })
	return nil
}

// rereadRollups reads the roll-ups written since ix was read that hold a
// segment of ix.Segments[missing] (an individual record then), and marks
// the segments they hold, when the records are the same, as read from
// them (so that their packs attach).
func (s *Store) rereadRollups(ctx context.Context, ix *Index, missing []int) error {
	var individual []int
	for _, i := range missing {
		if !strings.HasPrefix(ix.Segments[i].record, s.prefix()+"rollup/") {
			individual = append(individual, i)
		}
	}
	if len(individual) == 0 {
		return nil
	}
	rollups, err := s.listRollups(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, rr := range ix.Rollups {
		known[rr.Key] = true
	}
	for _, rr := range rollups {
		if known[rr.Key] {
			continue
		}
		holds := false
		for _, i := range individual {
			holds = holds || (rr.FirstSeq <= ix.Segments[i].Seq && ix.Segments[i].Seq <= rr.LastSeq)
		}
		if !holds {
			continue
		}
		r, err := s.readRollup(ctx, rr)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		k := sort.Search(len(ix.Segments), func(k int) bool { return ix.Segments[k].Seq >= rr.FirstSeq })
		for j := range r.Segments {
			if k+j >= len(ix.Segments) || ix.Segments[k+j].Seq != r.Segments[j].Seq {
				break
			}
			a, _ := json.Marshal(&ix.Segments[k+j])
			b, _ := json.Marshal(&r.Segments[j])
			if bytes.Equal(a, b) {
				ix.Segments[k+j].record = rr.Key
			}
		}
		ix.Rollups = append(ix.Rollups, rr)
	}
	sort.Slice(ix.Rollups, func(i, j int) bool { return ix.Rollups[i].FirstSeq < ix.Rollups[j].FirstSeq })
	return nil
}

// indexReaders is how many objects of the index ReadIndex reads (and
// decodes) at once: a read of small objects is bound by the storage's
// latency, the decoding of a roll-up by the CPU.
const indexReaders = 8

// inParallel calls fn(0..n-1), indexReaders at a time, and returns the
// error of each call.
func inParallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(indexReaders, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// indexSeq parses the segment number of an individual record's key.
func (s *Store) indexSeq(key string) (uint64, bool) {
	name, ok := strings.CutPrefix(key, s.prefix()+"index/")
	num, ok2 := strings.CutSuffix(name, ".json")
	if !ok || !ok2 || len(num) != 12 {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return n, err == nil
}

func commonPrefix(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return a[:i]
}

// orphanPage is the number of segment numbers one page of the orphan
// sweep covers: the data objects whose keys share a 9-digit prefix (about
// one listing request each).
const orphanPage = 1000

// RemoveOrphans deletes data objects that no index record names, in the
// pages (orphanPage segment numbers) from the first segment of ix to the
// one after its last: for segment numbers the index already has (the loser
// of an overlap), and, for later numbers, those over an hour old (a run
// that died between data and index; a younger one may belong to an
// archiver still running). With ix from ReadTail that is the newest
// roll-up and the open tail: a bounded number of listings. Older pages are
// swept one at a time by SweepOrphanPage.
func (s *Store) RemoveOrphans(ctx context.Context, ix *Index) error {
	if len(ix.Segments) == 0 {
		return nil
	}
	used := map[string]bool{}
	var lastSeq uint64
	for i := range ix.Segments {
		used[s.segmentDataKey(&ix.Segments[i])] = true
		lastSeq = max(lastSeq, ix.Segments[i].Seq)
	}
	from := ix.newestRun()
	for page := from / orphanPage; page <= (lastSeq+1)/orphanPage; page++ {
		if err := s.sweepPage(ctx, page, from, used, lastSeq); err != nil {
			return err
		}
	}
	return nil
}

// SweepOrphanPage removes the orphans of the one page, of those that
// begin before the newest roll-up, that the time now picks (a page per interval every
// in turn, so that each page is swept once in pages×every): the roll-ups
// over the page are read to know its segments. ix is from ReadTail.
func (s *Store) SweepOrphanPage(ctx context.Context, ix *Index, now time.Time, every time.Duration) error {
	if len(ix.Segments) == 0 || every <= 0 {
		return nil
	}
	pages := (ix.newestRun() + orphanPage - 1) / orphanPage
	if pages == 0 {
		return nil
	}
	page := uint64(now.UnixNano()/int64(every)) % pages
	lo, hi := page*orphanPage, page*orphanPage+orphanPage-1
	used := map[string]bool{}
	var lastSeq uint64
	for i := range ix.Segments {
		used[s.segmentDataKey(&ix.Segments[i])] = true
		lastSeq = max(lastSeq, ix.Segments[i].Seq)
	}
	for _, rr := range ix.Rollups {
		if rr.LastSeq < lo || rr.FirstSeq > hi {
			continue
		}
		r, err := s.readRollup(ctx, rr)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		for i := range r.Segments {
			used[s.segmentDataKey(&r.Segments[i])] = true
		}
	}
	return s.sweepPage(ctx, page, 0, used, lastSeq)
}

// newestRun returns the first segment of the newest stretch of
// consecutive segment numbers in ix (records of old files that could not
// be rolled up are left to SweepOrphanPage).
func (ix *Index) newestRun() uint64 {
	i := len(ix.Segments) - 1
	for i > 0 && ix.Segments[i-1].Seq+1 == ix.Segments[i].Seq {
		i--
	}
	return ix.Segments[i].Seq
}

// sweepPage deletes the unused data objects of one page, from segment
// from on (below it, used does not know the segments).
func (s *Store) sweepPage(ctx context.Context, page, from uint64, used map[string]bool, lastSeq uint64) error {
	objs, err := s.B.List(ctx, fmt.Sprintf("%sdata/%09d", s.prefix(), page))
	if err != nil {
		return err
	}
	for _, o := range objs {
		if used[o.Key] {
			continue
		}
		name := strings.TrimSuffix(path.Base(o.Key), ".zst")
		seqPart, _, _ := strings.Cut(name, "-")
		n, err := strconv.ParseUint(seqPart, 10, 64)
		if err != nil || len(seqPart) != 12 || n < from {
			continue
		}
		if n <= lastSeq || time.Since(o.ModTime) > time.Hour {
			if err := s.B.Delete(ctx, o.Key); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReadSegment returns a segment's events after checking size and sha256,
// decrypting an encrypted segment with Keys. A segment whose data key no
// key of Keys unwraps fails with an error matching repo.ErrNoUsableKey; one
// that does not decrypt, crypt.ErrDecrypt; a record that does not
// authenticate (see Authenticate), ErrUnauthenticated or ErrUnencrypted.
// The bytes are read from the segment's pack when it is packed (or its
// data object is gone and a pack holds it), else from its data object.
func (s *Store) ReadSegment(ctx context.Context, seg *Segment) ([]byte, error) {
	where := s.describe(seg)
	if err := seg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	k, err := s.authenticate(ctx, seg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	stored, from, err := s.readStored(ctx, seg)
	if err != nil {
		return nil, err
	}
	return s.open(seg, k, stored, from)
}

// describe names a segment for messages: its number, range and the object
// its record is in (its roll-up's, once rolled up).
func (s *Store) describe(seg *Segment) string {
	return fmt.Sprintf("binlog segment %d (%s:%d-%d, %s)", seg.Seq, seg.File, seg.Start, seg.End, s.RecordKey(seg))
}

// RecordKey returns the object a segment's index record was read from:
// the roll-up that holds it, or its individual record.
func (s *Store) RecordKey(seg *Segment) string {
	if seg.record != "" {
		return seg.record
	}
	return s.indexKey(seg.Seq)
}

// readStored returns a segment's stored bytes, checked against its
// record's size and sha256, and the object they are from: its pack, or its
// data object. A pack that fails is passed over for the data object (a
// compaction that has not deleted it yet), a data object that is gone for
// a pack that holds it (the record was read before the compaction). The
// errors wrap ErrCorrupt when the bytes are missing or wrong everywhere.
func (s *Store) readStored(ctx context.Context, seg *Segment) ([]byte, string, error) {
	dataKey := s.segmentDataKey(seg)
	loc := seg.pack
	if loc == nil {
		s.mu.Lock()
		loc = s.located[seg.Seq]
		s.mu.Unlock()
	}
	var packErr error
	if loc != nil {
		b, err := s.fromPack(ctx, loc, seg)
		if err == nil {
			return b, loc.key, nil
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, storage.ErrNotFound) {
			return nil, loc.key, fmt.Errorf("%s: %w", s.describe(seg), err)
		}
		packErr = err
	}
	stored, err := s.getLimited(ctx, dataKey, seg.StoredSize)
	if errors.Is(err, storage.ErrNotFound) {
		skip := ""
		if loc != nil {
			skip = loc.key
		}
		other, ferr := s.findPack(ctx, seg, skip)
		if ferr != nil {
			return nil, "", fmt.Errorf("%s: look for the pack that holds it: %w", s.describe(seg), ferr)
		}
		if other != nil {
			b, err := s.fromPack(ctx, other, seg)
			if err != nil {
				return nil, other.key, fmt.Errorf("%s: %w", s.describe(seg), err)
			}
			return b, other.key, nil
		}
		if packErr != nil {
			return nil, loc.key, fmt.Errorf("%s: %w, and the data object %s is gone", s.describe(seg), packErr, dataKey)
		}
		return nil, dataKey, fmt.Errorf("%w: %s: the data object %s is missing and no pack holds it", ErrCorrupt, s.describe(seg), dataKey)
	}
	if err != nil {
		return nil, dataKey, fmt.Errorf("%s: %w", s.describe(seg), err)
	}
	sum := sha256.Sum256(stored)
	if int64(len(stored)) != seg.StoredSize || hex.EncodeToString(sum[:]) != seg.SHA256 {
		return nil, dataKey, fmt.Errorf("%w: %s: the data object %s does not match the size or sha256 of the record", ErrCorrupt, s.describe(seg), dataKey)
	}
	return stored, dataKey, nil
}

// open decrypts (with k, the segment's key; nil: not encrypted) and
// decompresses a segment's stored bytes read from object from, and checks
// the length.
func (s *Store) open(seg *Segment, k *segmentKey, stored []byte, from string) ([]byte, error) {
	where := s.describe(seg)
	var err error
	if k != nil {
		if stored, err = k.cipher.Open(nil, stored, seg.Seq); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	} else if crypt.IsEncrypted(stored) {
		return nil, fmt.Errorf("%s looks encrypted but its index record names no key", where)
	}
	raw, err := decoder.DecodeAll(stored, make([]byte, 0, seg.RawSize))
	if err != nil {
		return nil, fmt.Errorf("%w: %s in %s: decompress: %v", ErrCorrupt, where, from, err)
	}
	if int64(len(raw)) != seg.RawSize || int64(len(raw)) != int64(seg.End-seg.Start) {
		return nil, fmt.Errorf("%w: %s in %s holds %d bytes, the record says %d-%d", ErrCorrupt, where, from, len(raw), seg.Start, seg.End)
	}
	return raw, nil
}

// Authenticate checks an index record against the instance's encryption
// policy and its MAC, unwrapping the run's data key with Keys: on an
// instance with encryption enabled (Encrypt) a record without a key
// (ErrUnencrypted) or without a MAC (ErrUnauthenticated) is refused unless
// AllowUnencrypted; a record with a MAC that does not match is refused
// always (ErrUnauthenticated).
func (s *Store) Authenticate(ctx context.Context, seg *Segment) error {
	_, err := s.authenticate(ctx, seg)
	return err
}

// authenticate is Authenticate, returning the segment's key (nil: not
// encrypted).
func (s *Store) authenticate(ctx context.Context, seg *Segment) (*segmentKey, error) {
	if seg.KeyRef == "" {
		if s.Encrypt && !s.AllowUnencrypted {
			return nil, fmt.Errorf("%w: instance %s has encryption enabled but this segment's index record names no key: it was archived before encryption was enabled, or planted by a writer of the bucket; pass --allow-unencrypted (allow_unencrypted) to replay old unencrypted segments", ErrUnencrypted, s.Instance)
		}
		return nil, nil
	}
	k, err := s.readKey(ctx, seg.KeyRef)
	if err != nil {
		return nil, err
	}
	if len(seg.MAC) == 0 {
		if s.Encrypt && !s.AllowUnencrypted {
			return nil, fmt.Errorf("%w: the index record has no MAC: it was written by an older version of Strata, or planted by a writer of the bucket; pass --allow-unencrypted (allow_unencrypted) to accept old records", ErrUnauthenticated)
		}
		return k, nil
	}
	msg, err := macMessage(seg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if !crypt.CheckMAC(k.authKey, msg, seg.MAC) {
		return nil, fmt.Errorf("%w: the MAC of the index record does not match: the record was altered or planted without the key (key ref %s)", ErrUnauthenticated, seg.KeyRef)
	}
	return k, nil
}

// CheckStored reads a segment's bytes back (from its pack or data object)
// and checks their size and sha256 against the index record, without a
// key: what can be checked of an encrypted segment by someone who cannot
// decrypt it. An unencrypted segment is decompressed and its length
// checked too. Errors wrap ErrCorrupt. The encryption policy is the
// caller's.
func (s *Store) CheckStored(ctx context.Context, seg *Segment) error {
	if err := seg.Validate(); err != nil {
		return err
	}
	stored, from, err := s.readStored(ctx, seg)
	if err != nil || seg.KeyRef != "" {
		return err
	}
	_, err = s.open(seg, nil, stored, from)
	return err
}

// IndexKey returns the object key of segment seq's index record.
func (s *Store) IndexKey(seq uint64) string { return s.indexKey(seq) }

// DataKey returns the object key of a segment's data.
func (s *Store) DataKey(seg *Segment) string { return s.segmentDataKey(seg) }

// IndexPrefix is where the individual index records of an instance's
// archive are (the open tail; a roll-up deletes those it holds).
func IndexPrefix(instance string) string { return instance + "/binlogs/index/" }
