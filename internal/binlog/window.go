package binlog

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/manifest"
)

// Window is a stretch of time over which point-in-time recovery is
// possible: from a backup's consistent point to the end of the hole-free
// archive that follows it.
type Window struct {
	FromBackup string    `json:"from_backup"`
	FromTime   time.Time `json:"from_time"`
	FromGTID   string    `json:"from_gtid,omitempty"`
	ToTime     time.Time `json:"to_time"`
	ToGTID     string    `json:"to_gtid,omitempty"`
	ToFile     string    `json:"to_file"`
	ToPos      uint32    `json:"to_pos"`
	// Flavor is the server's, as the archive recorded it.
	Flavor flavor.Name `json:"flavor,omitempty"`
	// ToSet is, for MySQL, the server's executed GTID set at the end of
	// the window.
	ToSet string `json:"to_gtid_set,omitempty"`
}

func (w Window) String() string {
	return fmt.Sprintf("%s (backup %s) to %s (%s:%d, GTID %s)", w.FromTime.Format(time.RFC3339), w.FromBackup,
		w.ToTime.Format(time.RFC3339), w.ToFile, w.ToPos, w.ToGTID)
}

// Windows returns the recovery windows that the backups and the archive
// give: one per hole-free run of the archive that covers a backup's
// consistent point, starting at the oldest such backup.
func Windows(backups []*manifest.Manifest, ix *Index) []Window {
	var out []Window
	for _, run := range ix.Runs() {
		var w *Window
		for _, b := range backups { // oldest first
			if b.BinlogFile == "" || !runCovers(run, b.BinlogFile, uint32(b.BinlogPos)) {
				continue
			}
			last := run[len(run)-1]
			w = &Window{FromBackup: b.BackupID, FromTime: b.ConsistentAt, FromGTID: b.GTIDSet,
				ToTime: last.LastTime, ToGTID: last.LastGTID, ToFile: last.File, ToPos: last.End,
				Flavor: last.FlavorName(), ToSet: last.Executed}
			if w.ToGTID == "" {
				for i := len(run) - 1; i >= 0 && w.ToGTID == ""; i-- {
					w.ToGTID = run[i].LastGTID
				}
			}
			if w.ToSet == "" && w.Flavor == flavor.MySQL {
				for i := len(run) - 1; i >= 0 && w.ToSet == ""; i-- {
					w.ToSet = run[i].Executed
				}
			}
			break
		}
		if w != nil {
			out = append(out, *w)
		}
	}
	return out
}

// runCovers says whether a run holds file from position 4 through pos.
func runCovers(run []Segment, file string, pos uint32) bool {
	fromStart := false
	for _, s := range run {
		if s.File == file && s.Start == 4 {
			fromStart = true
		}
		if fromStart && s.File == file && pos >= s.Start && pos <= s.End {
			return true
		}
	}
	return false
}

// DescribeWindows renders windows for an error message.
func DescribeWindows(ws []Window, gaps []Gap) string {
	if len(ws) == 0 {
		return "there is no recovery window: no backup's consistent point is covered by the binlog archive (start it with `strata archive start` and take a backup)"
	}
	var b strings.Builder
	b.WriteString("recovery windows:")
	for _, w := range ws {
		b.WriteString("\n  " + w.String())
	}
	for _, g := range gaps {
		fmt.Fprintf(&b, "\n  gap after %s:%d (%s): %s", g.LastFile, g.LastPos, g.LastTime.Format(time.RFC3339), g.Reason)
		if g.MissingGTIDs != "" && !strings.Contains(g.Reason, g.MissingGTIDs) {
			fmt.Fprintf(&b, " (missing GTIDs %s)", g.MissingGTIDs)
		}
	}
	return b.String()
}

// RunFlavor is the flavor of the server the segments were archived from,
// as their records say (one without a flavor is MariaDB's). Segments of
// both flavors in one replay are an error.
func RunFlavor(segs []Segment) (flavor.Name, error) {
	if len(segs) == 0 {
		return flavor.MariaDB, nil
	}
	f := segs[0].FlavorName()
	for i := range segs {
		if g := segs[i].FlavorName(); g != f {
			return "", fmt.Errorf("%w: segment %d was archived from a %s server, segment %d from a %s one", ErrCorrupt, segs[0].Seq, f, segs[i].Seq, g)
		}
	}
	return f, nil
}

// Before says whether backup b's consistent point precedes the target, so
// that replaying from it can reach the target. A GTID target is compared
// in the backup's flavor: MySQL's when the backup does not hold it yet,
// MariaDB's when the backup's domain is behind it.
func Before(b *manifest.Manifest, t Target) bool {
	switch {
	case !t.Time.IsZero():
		return !b.ConsistentAt.After(t.Time)
	case t.GTID != "":
		// Only a backup its manifest says is MySQL's takes MySQL GTIDs.
		if f, err := b.Flavor(); err == nil && f.Name == flavor.MySQL {
			one, err := gtid.ParseOne(flavor.MySQL, t.GTID)
			if err != nil {
				return false
			}
			have, err := b.GTID()
			return err == nil && !have.Contains(one)
		}
		g, err := ParseMariaGTID(t.GTID)
		if err != nil {
			return false
		}
		seqs, err := DomainSeqs(b.GTIDSet)
		if err != nil {
			return false
		}
		return seqs[g.Domain] < g.Seq
	default:
		return fileAfter(t.File, b.BinlogFile) || (t.File == b.BinlogFile && uint64(t.Pos) >= b.BinlogPos)
	}
}

// Reaches says whether a window extends to the target.
func (w Window) Reaches(t Target) bool {
	switch {
	case !t.Time.IsZero():
		return !t.Time.Truncate(time.Second).After(w.ToTime)
	case t.GTID != "" && w.Flavor == flavor.MySQL:
		one, err := gtid.ParseOne(flavor.MySQL, t.GTID)
		if err != nil {
			return false
		}
		if w.ToSet != "" {
			to, err := gtid.Parse(flavor.MySQL, w.ToSet)
			return err == nil && to.Contains(one)
		}
		// No executed set recorded: the window's last GTID, of the same
		// source, at or after the target.
		return sameSource(t.GTID, w.ToGTID) && gtidNumber(t.GTID) <= gtidNumber(w.ToGTID)
	case t.GTID != "":
		g, err := ParseMariaGTID(t.GTID)
		if err != nil {
			return false
		}
		last, err := DomainSeqs(w.ToGTID)
		return err == nil && last[g.Domain] >= g.Seq
	default:
		return fileAfter(w.ToFile, t.File) || (w.ToFile == t.File && t.Pos <= w.ToPos)
	}
}

// sameSource says whether two MySQL GTIDs (uuid[:tag]:N) have the same
// source uuid and tag.
func sameSource(a, b string) bool {
	i, j := strings.LastIndexByte(a, ':'), strings.LastIndexByte(b, ':')
	return i > 0 && j > 0 && strings.EqualFold(a[:i], b[:j])
}

// gtidNumber is the transaction number of a MySQL GTID (0 if none).
func gtidNumber(g string) uint64 {
	n, _ := strconv.ParseUint(g[strings.LastIndexByte(g, ':')+1:], 10, 64)
	return n
}
