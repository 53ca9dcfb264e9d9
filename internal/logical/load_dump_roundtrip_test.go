package logical_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
	"github.com/strata-backup/strata/internal/testdb"
)

// TestDumpLoadRoundTrip dumps the round-trip fixture with Dump and loads it
// with Load into a fresh server: every definition and checksum is the same.
func TestDumpLoadRoundTrip(t *testing.T) {
	forFlavors(t, func(t *testing.T, fl flavor.Name) {
		ctx := context.Background()
		srcSrv, src := startServer(t, fl)
		fixture(t, src, fl)
		dir := t.TempDir()
		res, err := logical.Dump(ctx, src, &logical.DirSink{Dir: dir}, logical.DumpOptions{FileSize: 1 << 10, StatementSize: 600})
		require.NoError(t, err)
		_, tdb := startServerOpts(t, testdb.Options{Flavor: fl, Password: srcSrv.Password})
		lres, err := logical.Load(ctx, tdb, &res.Index, logical.DirSource{Dir: dir}, logical.LoadOptions{
			Parallelism: 2, Users: true, DeferIndexes: true, LoadID: "rt"})
		require.NoError(t, err)
		t.Logf("load: %+v", lres)
		want := definitions(t, src, fl, res.Index)
		got := definitions(t, tdb, fl, res.Index)
		for k, v := range want {
			require.Equal(t, v, got[k], k)
		}
		execAll(t, tdb, "INSERT INTO shop.parent VALUES (3, 'p3')")
		var name string
		require.NoError(t, tdb.QueryRow("SELECT name FROM shop.parent WHERE id = 3").Scan(&name))
		require.Equal(t, "p3-b-a", name)
		require.NotContains(t, strings.Join(lres.Notes, "\n"), "its object is not loaded")
	})
}
