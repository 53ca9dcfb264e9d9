package drill

import (
	"fmt"
	"sort"
	"strings"

	"github.com/strata-backup/strata/internal/binlog"
)

// MergeGTID returns the MariaDB GTID position set with each GTID of
// gtids replacing the entry of its domain (the position after those
// transactions were applied on top of set). Unparsable entries are an
// error.
func MergeGTID(set string, gtids ...string) (string, error) {
	byDomain := map[uint32]string{}
	for _, s := range append([]string{set}, gtids...) {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			g, err := binlog.ParseMariaGTID(p)
			if err != nil {
				return "", err
			}
			byDomain[g.Domain] = p
		}
	}
	var ds []uint32
	for d := range byDomain {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = byDomain[d]
	}
	return strings.Join(out, ","), nil
}

// SameGTIDSet reports whether two MariaDB GTID positions name the same
// sequence number in every domain.
func SameGTIDSet(want, got string) (bool, error) {
	w, err := binlog.DomainSeqs(want)
	if err != nil {
		return false, fmt.Errorf("want %q: %w", want, err)
	}
	g, err := binlog.DomainSeqs(got)
	if err != nil {
		return false, fmt.Errorf("got %q: %w", got, err)
	}
	if len(w) != len(g) {
		return false, nil
	}
	for d, s := range w {
		if g[d] != s {
			return false, nil
		}
	}
	return true, nil
}
