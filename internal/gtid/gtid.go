// Package gtid holds the binlog coordinates Strata records and compares:
// a binlog position (file, offset) with its ordering, and a GTID set per
// flavor, MariaDB's domain-server-seq position and MySQL's uuid:intervals
// set, with parsing, containment and subtraction. Both wrap go-mysql's
// types (mysql.Position, mysql.GTIDSet).
package gtid

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/strata-backup/strata/internal/flavor"
)

// Position is a binlog file and the offset of an event boundary in it.
// Compare orders positions by the file's sequence number, then offset.
type Position = mysql.Position

// ParsePosition parses "binlog.000042:1234".
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return Position{}, fmt.Errorf("%q is not a binlog position (file:offset, e.g. binlog.000042:1234)", s)
	}
	off, err := strconv.ParseUint(s[i+1:], 10, 32)
	if err != nil || off < 4 {
		return Position{}, fmt.Errorf("%q is not a binlog position (file:offset, e.g. binlog.000042:1234; the offset is at least 4)", s)
	}
	return Position{Name: s[:i], Pos: uint32(off)}, nil
}

// FormatPosition is the inverse of ParsePosition.
func FormatPosition(p Position) string { return fmt.Sprintf("%s:%d", p.Name, p.Pos) }

// Set is an executed GTID set of one flavor. For MariaDB it is a
// position: the last sequence number applied in each domain; for MySQL
// the set of intervals of transaction numbers of each source uuid.
type Set struct {
	flavor flavor.Name
	set    mysql.GTIDSet
}

// Parse parses a GTID set of the flavor ("" is the empty set).
func Parse(f flavor.Name, s string) (Set, error) {
	s = strings.Join(strings.Fields(s), "") // MySQL prints newlines after commas
	switch f {
	case flavor.MariaDB:
		if err := checkMaria(s); err != nil {
			return Set{}, err
		}
	case flavor.MySQL:
		if err := checkMySQL(s); err != nil {
			return Set{}, err
		}
	default:
		return Set{}, fmt.Errorf("GTID set %q: unknown flavor %q", s, f)
	}
	set, err := mysql.ParseGTIDSet(f.GoMySQL(), s)
	if err != nil {
		return Set{}, fmt.Errorf("%q is not a %s GTID set: %v", s, f, err)
	}
	return Set{flavor: f, set: set}, nil
}

// MustParse is Parse for literals in tests and tables; it panics on error.
func MustParse(f flavor.Name, s string) Set {
	set, err := Parse(f, s)
	if err != nil {
		panic(err)
	}
	return set
}

func checkMaria(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p == "" {
			continue
		}
		if _, err := ParseMariaGTID(p); err != nil {
			return err
		}
	}
	return nil
}

func checkMySQL(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p == "" {
			continue
		}
		if !strings.Contains(p, ":") {
			return fmt.Errorf("%q is not a MySQL GTID set (uuid:intervals, e.g. 3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5)", s)
		}
	}
	return nil
}

// Flavor returns the set's flavor.
func (s Set) Flavor() flavor.Name { return s.flavor }

// String returns the set in the server's own notation, normalised
// (MySQL: uuids sorted, intervals merged; MariaDB: domains sorted).
func (s Set) String() string {
	if s.set == nil {
		return ""
	}
	if s.flavor == flavor.MariaDB {
		return sortedMaria(s.set.String())
	}
	return s.set.String()
}

// IsEmpty reports whether the set holds no transaction.
func (s Set) IsEmpty() bool { return s.set == nil || s.set.IsEmpty() }

// Contains reports whether every transaction of o is in s. Sets of
// different flavors contain nothing of each other.
func (s Set) Contains(o Set) bool {
	if o.IsEmpty() {
		return true
	}
	if s.IsEmpty() || s.flavor != o.flavor {
		return false
	}
	return s.set.Contain(o.set)
}

// Equal reports whether s and o hold the same transactions.
func (s Set) Equal(o Set) bool {
	if s.IsEmpty() || o.IsEmpty() {
		return s.IsEmpty() && o.IsEmpty()
	}
	return s.flavor == o.flavor && s.set.Equal(o.set)
}

// Clone returns an independent copy.
func (s Set) Clone() Set {
	if s.set == nil {
		return s
	}
	return Set{flavor: s.flavor, set: s.set.Clone()}
}

// Add returns s with the GTIDs or sets in other added (MariaDB: each
// domain moves forward to the later sequence number).
func (s Set) Add(other string) (Set, error) {
	o, err := Parse(s.flavorOr(other), other)
	if err != nil {
		return Set{}, err
	}
	return s.Union(o)
}

func (s Set) flavorOr(text string) flavor.Name {
	if s.flavor != "" {
		return s.flavor
	}
	if strings.Contains(text, ":") {
		return flavor.MySQL
	}
	return flavor.MariaDB
}

// Union returns the transactions of s and o.
func (s Set) Union(o Set) (Set, error) {
	if o.IsEmpty() {
		return s.Clone(), nil
	}
	if s.IsEmpty() {
		return o.Clone(), nil
	}
	if s.flavor != o.flavor {
		return Set{}, fmt.Errorf("cannot join a %s GTID set with a %s one", s.flavor, o.flavor)
	}
	out := s.Clone()
	if s.flavor == flavor.MariaDB {
		for _, p := range strings.Split(o.String(), ",") {
			if p == "" {
				continue
			}
			g, _ := ParseMariaGTID(p)
			cur, ok := mariaDomain(out, g.Domain)
			if !ok || g.Seq > cur.Seq {
				setMariaDomain(out, g)
			}
		}
		return out, nil
	}
	if err := out.set.Update(o.set.String()); err != nil {
		return Set{}, err
	}
	return out, nil
}

// Subtract returns the transactions of s that are not in o. For MariaDB,
// whose set is a position, it returns the domains where s is ahead of o,
// with s's sequence numbers.
func (s Set) Subtract(o Set) (Set, error) {
	if s.IsEmpty() || o.IsEmpty() {
		return s.Clone(), nil
	}
	if s.flavor != o.flavor {
		return Set{}, fmt.Errorf("cannot subtract a %s GTID set from a %s one", o.flavor, s.flavor)
	}
	if s.flavor == flavor.MariaDB {
		var keep []string
		for _, p := range strings.Split(s.String(), ",") {
			if p == "" {
				continue
			}
			g, _ := ParseMariaGTID(p)
			if theirs, ok := mariaDomain(o, g.Domain); !ok || theirs.Seq < g.Seq {
				keep = append(keep, p)
			}
		}
		return Parse(flavor.MariaDB, strings.Join(keep, ","))
	}
	mine, theirs := s.set.(*mysql.MysqlGTIDSet), o.set.(*mysql.MysqlGTIDSet)
	out := mysql.NewMysqlGTIDSet()
	for sid, tags := range *mine {
		for tag, ivs := range tags {
			rest := ivs
			if ot, ok := (*theirs)[sid]; ok {
				if oivs, ok := ot[tag]; ok {
					rest = minus(ivs, oivs)
				}
			}
			if len(rest) == 0 {
				continue
			}
			if out[sid] == nil {
				out[sid] = map[mysql.Tag]mysql.IntervalSlice{}
			}
			out[sid][tag] = rest
		}
	}
	return Set{flavor: flavor.MySQL, set: &out}, nil
}

// minus returns the intervals of a (half-open [Start, Stop)) not in b.
func minus(a, b mysql.IntervalSlice) mysql.IntervalSlice {
	a, b = a.Normalize(), b.Normalize()
	var out mysql.IntervalSlice
	for _, iv := range a {
		cur := iv.Start
		for _, cut := range b {
			if cut.Stop <= cur || cut.Start >= iv.Stop {
				continue
			}
			if cut.Start > cur {
				out = append(out, mysql.Interval{Start: cur, Stop: cut.Start})
			}
			if cut.Stop > cur {
				cur = cut.Stop
			}
		}
		if cur < iv.Stop {
			out = append(out, mysql.Interval{Start: cur, Stop: iv.Stop})
		}
	}
	return out
}

// ContainsGTID reports whether the one transaction g ("uuid:N" or
// "domain-server-seq") is in s.
func (s Set) ContainsGTID(g string) (bool, error) {
	one, err := ParseOne(s.flavorOr(g), g)
	if err != nil {
		return false, err
	}
	return s.Contains(one), nil
}

// ParseOne parses a single GTID of the flavor as a set of one
// transaction: MySQL "uuid:N" (or "uuid:tag:N"), MariaDB
// "domain-server-seq".
func ParseOne(f flavor.Name, g string) (Set, error) {
	g = strings.TrimSpace(g)
	switch f {
	case flavor.MariaDB:
		if _, err := ParseMariaGTID(g); err != nil {
			return Set{}, err
		}
	case flavor.MySQL:
		i := strings.LastIndexByte(g, ':')
		n, err := strconv.ParseInt(g[i+1:], 10, 64)
		if i <= 0 || err != nil || n < 1 {
			return Set{}, fmt.Errorf("%q is not a MySQL GTID (uuid:N with N ≥ 1, e.g. 3E11FA47-71CA-11E1-9E33-C80AA9429562:23)", g)
		}
	default:
		return Set{}, fmt.Errorf("GTID %q: unknown flavor %q", g, f)
	}
	return Parse(f, g)
}

// Last returns, for a MySQL set, the last transaction number of the
// source uuid (0 when the uuid has none).
func (s Set) Last(uuid string) int64 {
	ms, ok := s.set.(*mysql.MysqlGTIDSet)
	if !ok {
		return 0
	}
	var last int64
	for sid, tags := range *ms {
		if !strings.EqualFold(sid.String(), uuid) {
			continue
		}
		for _, ivs := range tags {
			for _, iv := range ivs {
				if iv.Stop-1 > last {
					last = iv.Stop - 1
				}
			}
		}
	}
	return last
}

// MariaGTID is one MariaDB GTID (domain-server-seq).
type MariaGTID struct {
	Domain, Server uint32
	Seq            uint64
}

// String is "domain-server-seq".
func (g MariaGTID) String() string { return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq) }

// ParseMariaGTID parses "domain-server-seq".
func ParseMariaGTID(s string) (MariaGTID, error) {
	var g MariaGTID
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 3 {
		return g, fmt.Errorf("%q is not a MariaDB GTID (domain-server-seq, e.g. 0-1-42)", s)
	}
	d, err1 := strconv.ParseUint(parts[0], 10, 32)
	sv, err2 := strconv.ParseUint(parts[1], 10, 32)
	sq, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return g, fmt.Errorf("%q is not a MariaDB GTID (domain-server-seq, e.g. 0-1-42)", s)
	}
	return MariaGTID{Domain: uint32(d), Server: uint32(sv), Seq: sq}, nil
}

// Domains returns a MariaDB set's last sequence number per domain.
func (s Set) Domains() map[uint32]uint64 {
	out := map[uint32]uint64{}
	if s.flavor != flavor.MariaDB || s.set == nil {
		return out
	}
	for d, g := range s.set.(*mysql.MariadbGTIDSet).Sets {
		out[d] = g.SequenceNumber
	}
	return out
}

func mariaDomain(s Set, domain uint32) (MariaGTID, bool) {
	ms, ok := s.set.(*mysql.MariadbGTIDSet)
	if !ok {
		return MariaGTID{}, false
	}
	g, ok := ms.Sets[domain]
	if !ok {
		return MariaGTID{}, false
	}
	return MariaGTID{Domain: g.DomainID, Server: g.ServerID, Seq: g.SequenceNumber}, true
}

func setMariaDomain(s Set, g MariaGTID) {
	ms := s.set.(*mysql.MariadbGTIDSet)
	ms.Sets[g.Domain] = &mysql.MariadbGTID{DomainID: g.Domain, ServerID: g.Server, SequenceNumber: g.Seq}
}

func sortedMaria(s string) string {
	parts := strings.Split(s, ",")
	sort.Slice(parts, func(i, j int) bool {
		a, _ := ParseMariaGTID(parts[i])
		b, _ := ParseMariaGTID(parts[j])
		return a.Domain < b.Domain
	})
	return strings.Join(parts, ",")
}
