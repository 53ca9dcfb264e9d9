package activities

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
)

const mysqlSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"

// fakeTools points the instance's tools at executables of this test, so
// that both flavors' tools are "installed".
func fakeTools(t *testing.T, c *Catalog) {
	t.Helper()
	bin := t.TempDir()
	for _, n := range []string{"xtrabackup", "xbstream", "mariabackup", "mbstream"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	}
	tl := &c.Config.Instances[0].Tools
	tl.Xtrabackup, tl.Xbstream = filepath.Join(bin, "xtrabackup"), filepath.Join(bin, "xbstream")
	tl.Mariabackup, tl.Mbstream = filepath.Join(bin, "mariabackup"), filepath.Join(bin, "mbstream")
}

func flavored(m *manifest.Manifest, f flavor.Name, tool, gtidSet string) *manifest.Manifest {
	m.ServerFlavor, m.Tool, m.GTIDSet = string(f), tool, gtidSet
	return m
}

// The restore's tool follows the flavor the manifests record, not their
// tool field: a MySQL manifest whose tool says mariabackup is restored
// with xtrabackup, and a MariaDB one whose tool says xtrabackup with
// mariabackup. The manifests go through the repository, as a restore
// reads them.
func TestRestoreFlavorComesFromTheManifest(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		f        flavor.Name
		tool     string
		gtidSet  string
		wantTool string
	}{
		{flavor.MySQL, "mariabackup", mysqlSet, "xtrabackup"},
		{flavor.MariaDB, "xtrabackup", "0-1-42", "mariabackup"},
	} {
		full := flavored(bk("f1", manifest.TypeFull, "", 0, 100, 0), c.f, c.tool, c.gtidSet)
		inc := flavored(bk("i1", manifest.TypeIncremental, "f1", 100, 150, 1), c.f, c.tool, c.gtidSet)
		cat := testCatalog(t, 0, full, inc)
		fakeTools(t, cat)
		a := &Agent{Host: "h1", Config: cat.Config, Repo: cat.Repo}
		chain, err := a.loadChain(ctx, RestoreParams{Instance: "db1", BackupID: "i1", Chain: []string{"f1", "i1"}})
		require.NoError(t, err)
		tool, err := a.restoreTool("db1", chain)
		require.NoError(t, err)
		assert.Equal(t, c.wantTool, tool.Name, "%s manifest with tool %s", c.f, c.tool)
		assert.Equal(t, c.f, tool.Flavor)
	}
}

// A manifest older than the flavor field: its tool tells the flavor (the
// documented legacy rule); a manifest that tells none is refused.
func TestRestoreFlavorOfAnOldManifest(t *testing.T) {
	cat := testCatalog(t, 0)
	fakeTools(t, cat)
	paths := toolPaths(&cat.Config.Instances[0])
	old := flavored(bk("f1", manifest.TypeFull, "", 0, 100, 0), "", "xtrabackup", mysqlSet)
	tool, err := restoreToolFor([]*manifest.Manifest{old}, paths)
	require.NoError(t, err)
	assert.Equal(t, "xtrabackup", tool.Name)
	old.Tool = "mariabackup"
	old.GTIDSet = "0-1-42"
	tool, err = restoreToolFor([]*manifest.Manifest{old}, paths)
	require.NoError(t, err)
	assert.Equal(t, "mariabackup", tool.Name)
	old.Tool = "simulated"
	_, err = restoreToolFor([]*manifest.Manifest{old}, paths)
	require.Error(t, err)
	assert.Equal(t, ErrCorruptBackup, appErrType(err))
	assert.Contains(t, err.Error(), "records no server_flavor")
}

// Members of different flavors are no chain.
func TestRestoreChainOfMixedFlavorsIsRefused(t *testing.T) {
	cat := testCatalog(t, 0)
	fakeTools(t, cat)
	full := flavored(bk("f1", manifest.TypeFull, "", 0, 100, 0), flavor.MariaDB, "mariabackup", "0-1-42")
	inc := flavored(bk("i1", manifest.TypeIncremental, "f1", 100, 150, 1), flavor.MySQL, "mariabackup", mysqlSet)
	_, err := restoreToolFor([]*manifest.Manifest{full, inc}, toolPaths(&cat.Config.Instances[0]))
	require.Error(t, err)
	assert.Equal(t, ErrBrokenChain, appErrType(err))
	assert.Contains(t, err.Error(), "i1 is of a mysql server but its full backup f1 is of a mariadb server")
}

// A GTID set of MySQL's shape in a MariaDB manifest is an error, not a
// MySQL backup: such a manifest is not written, and one planted in the
// repository is not read.
func TestRestoreRefusesAGTIDSetOfTheOtherShape(t *testing.T) {
	ctx := context.Background()
	cat := testCatalog(t, 0)
	bad := flavored(bk("f1", manifest.TypeFull, "", 0, 100, 0), flavor.MariaDB, "mariabackup", mysqlSet)
	require.ErrorContains(t, cat.Repo.WriteManifest(ctx, bad), "is not a MariaDB GTID")

	data, err := json.Marshal(bad)
	require.NoError(t, err)
	require.NoError(t, cat.Repo.Backend().Put(ctx, repo.ManifestKey("db1", "f1"), strings.NewReader(string(data)), int64(len(data))))
	a := &Agent{Host: "h1", Config: cat.Config, Repo: cat.Repo}
	_, err = a.loadChain(ctx, RestoreParams{Instance: "db1", BackupID: "f1", Chain: []string{"f1"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "gtid_set of a mariadb server")
	assert.Contains(t, err.Error(), "is not a MariaDB GTID")
}

// The drill reads the restored data's GTID set as the backup's flavor's:
// a MySQL set in a MariaDB backup's binlog info is an error.
func TestDrillExecutedGTIDOfTheOtherShapeIsAnError(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "xtrabackup_binlog_info"), []byte("binlog.000002\t1574\t"+mysqlSet+"\n"), 0o600))
	_, err := executedGTID(context.Background(), nil, flavor.MariaDB, dir, false)
	require.ErrorContains(t, err, "is not a MariaDB GTID")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "xtrabackup_binlog_info"), []byte("binlog.000002\t1574\t0-1-42,1-2-7\n"), 0o600))
	got, err := executedGTID(context.Background(), nil, flavor.MariaDB, dir, false)
	require.NoError(t, err)
	assert.Equal(t, "0-1-42,1-2-7", got)
}
