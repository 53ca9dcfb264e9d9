package flavor

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		version, comment string
		want             Name
	}{
		{"10.11.19-MariaDB-0+deb12u1-log", "Debian 12", MariaDB},
		{"5.5.5-10.6.12-MariaDB", "", MariaDB},
		{"11.4.2", "MariaDB Server", MariaDB},
		{"9.7.4", "(Debian)", MySQL},
		{"8.0.36-28", "Percona Server (GPL), Release 28", MySQL},
	} {
		f := Detect(c.version, c.comment)
		require.Equal(t, c.want, f.Name, c.version)
		require.Equal(t, c.version, f.Version)
	}
}

func TestParseName(t *testing.T) {
	n, err := ParseName("MySQL")
	require.NoError(t, err)
	require.Equal(t, MySQL, n)
	_, err = ParseName("")
	require.ErrorContains(t, err, "no server flavor recorded")
	_, err = ParseName("postgres")
	require.ErrorContains(t, err, `"postgres" is unknown`)
}

func TestWordsFollowTheVersion(t *testing.T) {
	require.Equal(t, "SHOW BINARY LOG STATUS", Flavor{MySQL, "9.7.4"}.Words().BinlogStatus)
	require.Equal(t, "SHOW BINARY LOG STATUS", Flavor{MySQL, "8.4.0"}.Words().BinlogStatus)
	require.Equal(t, "SHOW MASTER STATUS", Flavor{MySQL, "8.0.36"}.Words().BinlogStatus)
	require.Equal(t, "START REPLICA", Flavor{MySQL, "8.0.36"}.Words().StartReplica)
	require.Equal(t, "START SLAVE", Flavor{MariaDB, "10.11.19-MariaDB"}.Words().StartReplica)
	require.True(t, Flavor{MySQL, "10.0"}.AtLeast(9, 7))
	require.False(t, Flavor{MySQL, "8.3.9"}.AtLeast(8, 4))
}
