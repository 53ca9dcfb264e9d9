package drill

import (
	"fmt"
	"sort"
	"strings"

	"github.com/strata-backup/strata/internal/binlog"
)

// gtidEntry is one domain's entry of a GTID position.
type gtidEntry struct {
	domain uint32
	seq    uint64
	text   string
}

// parsePosition parses a MariaDB GTID position into one entry per domain
// (the highest sequence number wins), sorted by domain. It ranges over no
// map, so that workflows may call it.
func parsePosition(set string) ([]gtidEntry, error) {
	var out []gtidEntry
	for _, p := range strings.Split(set, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		g, err := binlog.ParseMariaGTID(p)
		if err != nil {
			return nil, err
		}
		out = setDomain(out, gtidEntry{domain: g.Domain, seq: g.Seq, text: p}, false)
	}
	return out, nil
}

// setDomain puts e into the sorted entries: replacing its domain's entry
// (always with replace, else when e's sequence number is higher).
func setDomain(es []gtidEntry, e gtidEntry, replace bool) []gtidEntry {
	i := sort.Search(len(es), func(i int) bool { return es[i].domain >= e.domain })
	if i < len(es) && es[i].domain == e.domain {
		if replace || e.seq > es[i].seq {
			es[i] = e
		}
		return es
	}
	es = append(es, gtidEntry{})
	copy(es[i+1:], es[i:])
	es[i] = e
	return es
}

// MergeGTID returns the MariaDB GTID position set with each GTID of
// gtids replacing the entry of its domain (the position after those
// transactions were applied on top of set), sorted by domain. Unparsable
// entries are an error.
func MergeGTID(set string, gtids ...string) (string, error) {
	es, err := parsePosition(set)
	if err != nil {
		return "", err
	}
	for _, s := range gtids {
		top, err := parsePosition(s)
		if err != nil {
			return "", err
		}
		for _, e := range top {
			es = setDomain(es, e, true)
		}
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.text
	}
	return strings.Join(out, ","), nil
}

// SameGTIDSet reports whether two MariaDB GTID positions name the same
// sequence number in every domain.
func SameGTIDSet(want, got string) (bool, error) {
	w, err := parsePosition(want)
	if err != nil {
		return false, fmt.Errorf("want %q: %w", want, err)
	}
	g, err := parsePosition(got)
	if err != nil {
		return false, fmt.Errorf("got %q: %w", got, err)
	}
	if len(w) != len(g) {
		return false, nil
	}
	for i := range w {
		if w[i].domain != g[i].domain || w[i].seq != g[i].seq {
			return false, nil
		}
	}
	return true, nil
}
