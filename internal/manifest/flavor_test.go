package manifest_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
)

// The flavor is the recorded server_flavor, whatever the tool field says.
func TestFlavorIsTheRecordedOne(t *testing.T) {
	m := sample()
	m.ServerFlavor, m.Tool, m.ServerVersion = "mysql", "mariabackup", "9.7.4"
	m.GTIDSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
	f, err := m.Flavor()
	require.NoError(t, err)
	assert.Equal(t, flavor.Flavor{Name: flavor.MySQL, Version: "9.7.4"}, f)
	set, err := m.GTID()
	require.NoError(t, err)
	assert.Equal(t, flavor.MySQL, set.Flavor())

	m = sample()
	m.Tool = "xtrabackup" // server_flavor says mariadb
	f, err = m.Flavor()
	require.NoError(t, err)
	assert.Equal(t, flavor.MariaDB, f.Name)
}

// A manifest written before the flavor was recorded: the tool tells it
// (the legacy rule), and nothing else does.
func TestFlavorOfAnOldManifestFromItsTool(t *testing.T) {
	m := sample()
	m.ServerFlavor = ""
	for tool, want := range map[string]flavor.Name{"mariabackup": flavor.MariaDB, "xtrabackup": flavor.MySQL} {
		m.Tool = tool
		f, err := m.Flavor()
		require.NoError(t, err)
		assert.Equal(t, want, f.Name, tool)
	}
	m.Tool = "simulated"
	_, err := m.Flavor()
	require.ErrorContains(t, err, "records no server_flavor")
	_, err = m.GTID()
	require.Error(t, err)
}

// A GTID set of MySQL's shape in a MariaDB manifest is an error, not a
// MySQL backup; and so is the converse, and an unknown flavor.
func TestGTIDSetMustBeOfTheManifestsFlavor(t *testing.T) {
	m := sample()
	m.GTIDSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
	_, err := m.GTID()
	require.ErrorContains(t, err, "is not a MariaDB GTID")
	_, err = manifest.Encode(m)
	require.ErrorContains(t, err, "gtid_set of a mariadb server")

	data, err := manifest.Encode(sample())
	require.NoError(t, err)
	for from, to := range map[string]string{
		`"gtid_set": "0-1-42"`:       `"gtid_set": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"`,
		`"server_flavor": "mariadb"`: `"server_flavor": "postgres"`,
	} {
		bad := []byte(replaceOnce(t, string(data), from, to))
		_, err := manifest.Decode(bad)
		require.ErrorIs(t, err, manifest.ErrInvalid, to)
	}
	m = sample()
	m.ServerFlavor, m.GTIDSet = "mysql", "0-1-42"
	_, err = manifest.Encode(m)
	require.ErrorContains(t, err, "gtid_set of a mysql server")
}

func replaceOnce(t *testing.T, s, from, to string) string {
	t.Helper()
	require.Contains(t, s, from)
	return strings.Replace(s, from, to, 1)
}
