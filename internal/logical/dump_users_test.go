package logical_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
)

// An account the server ignores (a host name in mysql.user on a server
// running with skip-name-resolve, as mariadb-install-db leaves
// root@<hostname>) cannot be read with SHOW CREATE USER: the dump leaves it
// out instead of failing, and keeps the accounts the server has.
func TestDumpSkipsAccountsTheServerIgnores(t *testing.T) {
	_, db := startServer(t, flavor.MariaDB)
	execAll(t, db,
		"CREATE USER 'kept'@'%' IDENTIFIED BY 'k-1'",
		"INSERT INTO mysql.global_priv (Host, User, Priv) VALUES ('some-host', 'ghost', '{}')",
		"FLUSH PRIVILEGES")
	dir := t.TempDir()
	res, err := logical.Dump(context.Background(), db, &logical.DirSink{Dir: dir}, logical.DumpOptions{})
	require.NoError(t, err)
	var users string
	for _, f := range res.Index.Files {
		if f.Kind == logical.KindUsers {
			b, err := os.ReadFile(filepath.Join(dir, f.Name))
			require.NoError(t, err)
			users = string(b)
		}
	}
	require.Contains(t, users, "`kept`@`%`")
	require.False(t, strings.Contains(users, "ghost"), "the ignored account is not dumped")
}
