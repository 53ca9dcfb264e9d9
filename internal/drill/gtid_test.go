package drill_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/flavor"
)

const (
	uuidA = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	uuidB = "4f22ab58-82db-11e2-8f44-d91bb9530673"
)

func TestWantGTIDMySQL(t *testing.T) {
	for _, c := range []struct {
		base string
		tops []string
		want string
	}{
		{uuidA + ":1-100", nil, uuidA + ":1-100"},
		{uuidA + ":1-100", []string{uuidA + ":120"}, uuidA + ":1-120"},
		// Another source's transactions are kept; the target's source
		// gains those after the backup's last one.
		{uuidA + ":1-100," + uuidB + ":1-7", []string{uuidB + ":9"}, uuidA + ":1-100," + uuidB + ":1-9"},
		// Transactions missing before the backup's last one stay missing.
		{uuidA + ":1-50:60-100", []string{uuidA + ":101"}, uuidA + ":1-50:60-101"},
		// A target the backup already holds adds nothing.
		{uuidA + ":1-100", []string{uuidA + ":40"}, uuidA + ":1-100"},
		{"", []string{uuidA + ":3"}, uuidA + ":1-3"},
	} {
		got, err := drill.WantGTID(flavor.MySQL, c.base, c.tops...)
		require.NoError(t, err, c.base)
		assert.Equal(t, c.want, got, "%s + %v", c.base, c.tops)
	}
}

func TestWantGTIDMariaDB(t *testing.T) {
	got, err := drill.WantGTID(flavor.MariaDB, "0-1-10,1-2-5", "1-3-9")
	require.NoError(t, err)
	assert.Equal(t, "0-1-10,1-3-9", got)
}

// The flavor is the caller's (the manifest's): a set of the other
// flavor's shape is an error, never a switch of flavor.
func TestGTIDOfTheOtherFlavorIsAnError(t *testing.T) {
	_, err := drill.WantGTID(flavor.MariaDB, uuidA+":1-100")
	require.ErrorContains(t, err, "is not a MariaDB GTID")
	_, err = drill.WantGTID(flavor.MariaDB, "0-1-10", uuidA+":101")
	require.ErrorContains(t, err, "is not a MariaDB GTID")
	_, err = drill.WantGTID(flavor.MySQL, "0-1-10")
	require.ErrorContains(t, err, "is not a MySQL GTID set")
	_, err = drill.WantGTID(flavor.MySQL, uuidA+":1-100", "0-1-11")
	require.ErrorContains(t, err, "is not a MySQL GTID")
	_, err = drill.SameGTID(flavor.MariaDB, uuidA+":1-100", uuidA+":1-100")
	require.ErrorContains(t, err, "want:")
	_, err = drill.SameGTID(flavor.MySQL, uuidA+":1-100", "0-1-10")
	require.ErrorContains(t, err, "got:")
	_, err = drill.WantGTID("", "0-1-10")
	require.ErrorContains(t, err, "unknown flavor")
}

func TestSameGTID(t *testing.T) {
	for _, c := range []struct {
		f         flavor.Name
		want, got string
		same      bool
	}{
		{flavor.MySQL, uuidA + ":1-100", uuidA + ":1-100", true},
		// MySQL prints uuids in upper or lower case and sets over lines.
		{flavor.MySQL, uuidA + ":1-5," + uuidB + ":1-2", uuidB + ":1-2,\n" + "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", true},
		{flavor.MySQL, uuidA + ":1-100", uuidA + ":1-99", false},
		{flavor.MySQL, uuidA + ":1-100", uuidA + ":1-100," + uuidB + ":1", false},
		{flavor.MariaDB, "0-1-10,1-2-5", "1-2-5,0-1-10", true},
		{flavor.MariaDB, "0-1-10", "0-1-11", false},
		{flavor.MariaDB, "", "", true},
	} {
		same, err := drill.SameGTID(c.f, c.want, c.got)
		require.NoError(t, err)
		assert.Equal(t, c.same, same, "%s %q %q", c.f, c.want, c.got)
	}
}
