package binlog

import (
	"fmt"
	"strings"
	"time"

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
				ToTime: last.LastTime, ToGTID: last.LastGTID, ToFile: last.File, ToPos: last.End}
			if w.ToGTID == "" {
				for i := len(run) - 1; i >= 0 && w.ToGTID == ""; i-- {
					w.ToGTID = run[i].LastGTID
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
	}
	return b.String()
}

// Before says whether backup b's consistent point precedes the target, so
// that replaying from it can reach the target.
func Before(b *manifest.Manifest, t Target) bool {
	switch {
	case !t.Time.IsZero():
		return !b.ConsistentAt.After(t.Time)
	case t.GTID != "":
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
