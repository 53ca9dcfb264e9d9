package drill

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
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
		g, err := gtid.ParseMariaGTID(p)
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

// WantGTID is the executed GTID set a restore of a backup at base, with
// the transactions up to and including each of tops replayed on top,
// must have, for a server of flavor f. MariaDB: each top's domain moves
// to it (MergeGTID). MySQL: each top uuid:N adds that source's
// transactions after base's last one up to N (a replay applies every
// transaction of the archive in order). A top or base of the other
// flavor's shape is an error. The result is normalised (gtid.Set.String)
// and computed without ranging over a map, so workflows may call it.
func WantGTID(f flavor.Name, base string, tops ...string) (string, error) {
	switch f {
	case flavor.MariaDB:
		if _, err := gtid.Parse(f, base); err != nil {
			return "", err
		}
		for _, t := range tops {
			if _, err := gtid.Parse(f, t); err != nil {
				return "", err
			}
		}
		return MergeGTID(base, tops...)
	case flavor.MySQL:
		set, err := gtid.Parse(f, base)
		if err != nil {
			return "", err
		}
		for _, t := range tops {
			if strings.TrimSpace(t) == "" {
				continue
			}
			if _, err := gtid.ParseOne(f, t); err != nil {
				return "", err
			}
			i := strings.LastIndexByte(t, ':')
			uuid, n := strings.TrimSpace(t[:i]), strings.TrimSpace(t[i+1:])
			last, _ := strconv.ParseInt(n, 10, 64)
			from := set.Last(uuid) + 1
			if from > last {
				continue // already in base
			}
			if set, err = set.Add(fmt.Sprintf("%s:%d-%d", uuid, from, last)); err != nil {
				return "", err
			}
		}
		return set.String(), nil
	}
	return "", fmt.Errorf("GTID set %q: unknown flavor %q", base, f)
}

// SameGTID reports whether two executed GTID sets of a server of flavor
// f hold the same transactions (MariaDB: the same sequence number in
// every domain). A set of the other flavor's shape is an error.
func SameGTID(f flavor.Name, want, got string) (bool, error) {
	w, err := gtid.Parse(f, want)
	if err != nil {
		return false, fmt.Errorf("want: %w", err)
	}
	g, err := gtid.Parse(f, got)
	if err != nil {
		return false, fmt.Errorf("got: %w", err)
	}
	if f == flavor.MariaDB {
		return SameGTIDSet(want, got)
	}
	return w.Equal(g), nil
}
