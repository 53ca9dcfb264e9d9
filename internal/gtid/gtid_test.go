package gtid

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
)

const (
	uA = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	uB = "8a94f357-aab4-11df-86ab-c80aa9429562"
)

func TestMySQLSetContainsAndSubtracts(t *testing.T) {
	s := MustParse(flavor.MySQL, uA+":1-10:15-20,\n"+uB+":1-3")
	require.Equal(t, uA+":1-10:15-20,"+uB+":1-3", s.String())
	require.True(t, s.Contains(MustParse(flavor.MySQL, uA+":2-5")))
	require.False(t, s.Contains(MustParse(flavor.MySQL, uA+":9-11")))
	require.False(t, s.Contains(MustParse(flavor.MySQL, uB+":4")))
	ok, err := s.ContainsGTID(uA + ":17")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.ContainsGTID(uA + ":12")
	require.NoError(t, err)
	require.False(t, ok)

	rest, err := s.Subtract(MustParse(flavor.MySQL, uA+":1-4:8-16,"+uB+":1-3"))
	require.NoError(t, err)
	require.Equal(t, uA+":5-7:17-20", rest.String())
	empty, err := s.Subtract(s)
	require.NoError(t, err)
	require.True(t, empty.IsEmpty())
	require.Equal(t, int64(20), s.Last(uA))
	require.Equal(t, int64(0), s.Last("00000000-0000-0000-0000-000000000000"))

	u, err := MustParse(flavor.MySQL, uA+":1-3").Add(uA + ":4")
	require.NoError(t, err)
	require.True(t, u.Equal(MustParse(flavor.MySQL, uA+":1-4")))
}

func TestMariaDBSetIsAPosition(t *testing.T) {
	s := MustParse(flavor.MariaDB, "1-2-5,0-1-100")
	require.Equal(t, "0-1-100,1-2-5", s.String())
	require.True(t, s.Contains(MustParse(flavor.MariaDB, "0-1-99")))
	require.False(t, s.Contains(MustParse(flavor.MariaDB, "0-1-101")))
	require.False(t, s.Contains(MustParse(flavor.MariaDB, "2-1-1")))
	rest, err := MustParse(flavor.MariaDB, "0-1-100,1-2-7").Subtract(s)
	require.NoError(t, err)
	require.Equal(t, "1-2-7", rest.String())
	u, err := s.Add("0-3-120,2-1-1")
	require.NoError(t, err)
	require.Equal(t, "0-3-120,1-2-5,2-1-1", u.String())
	require.Equal(t, map[uint32]uint64{0: 100, 1: 5}, s.Domains())
}

func TestParseRefusesTheOtherFlavorsShape(t *testing.T) {
	_, err := Parse(flavor.MariaDB, uA+":1-5")
	require.ErrorContains(t, err, "not a MariaDB GTID")
	_, err = Parse(flavor.MySQL, "0-1-5")
	require.ErrorContains(t, err, "not a MySQL GTID set")
	_, err = ParseOne(flavor.MySQL, uA+":1-5")
	require.ErrorContains(t, err, "not a MySQL GTID")
	_, err = ParseOne(flavor.MySQL, uA+":0")
	require.ErrorContains(t, err, "N ≥ 1")
	_, err = Parse(flavor.MySQL, "nonsense:1")
	require.Error(t, err)
	require.False(t, MustParse(flavor.MySQL, uA+":1").Contains(MustParse(flavor.MariaDB, "0-1-1")))
	_, err = MustParse(flavor.MySQL, uA+":1").Union(MustParse(flavor.MariaDB, "0-1-1"))
	require.Error(t, err)
}

func TestPositionOrdersByFileNumberThenOffset(t *testing.T) {
	a, err := ParsePosition("binlog.000009:1234")
	require.NoError(t, err)
	b, err := ParsePosition("binlog.000010:4")
	require.NoError(t, err)
	require.Equal(t, -1, a.Compare(b))
	require.Equal(t, 1, b.Compare(a))
	c, _ := ParsePosition("binlog.000009:999")
	require.Equal(t, 1, a.Compare(c))
	require.Equal(t, "binlog.000009:1234", FormatPosition(a))
	for _, bad := range []string{"binlog.000009", "binlog.000009:", ":5", "binlog.000009:x", "binlog.000009:3"} {
		_, err := ParsePosition(bad)
		require.Error(t, err, bad)
	}
}
