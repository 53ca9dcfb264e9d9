package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
)

func testCatalog(t *testing.T, maxChain int, backups ...*manifest.Manifest) *Catalog {
	t.Helper()
	cfg, err := config.Parse([]byte(`
storage: {local: {root: r}}
instances: [{id: db1, host: h1, connect: {address: "x:1", user: u}, datadir: /d}]`))
	require.NoError(t, err)
	cfg.Instances[0].Backup.MaxChainLength = maxChain
	r := repo.New(memory.New())
	for _, m := range backups {
		require.NoError(t, r.WriteManifest(context.Background(), m))
	}
	return &Catalog{Config: cfg, Repo: r}
}

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func bk(id, typ, parent string, from, to uint64, hour int) *manifest.Manifest {
	return &manifest.Manifest{FormatVersion: manifest.FormatVersion, BackupID: id, Instance: "db1", Type: typ, ParentID: parent,
		FromLSN: from, ToLSN: to, StartTime: t0.Add(time.Duration(hour) * time.Hour), EndTime: t0.Add(time.Duration(hour)*time.Hour + time.Minute),
		Compression: "zstd", RawSHA256: strings.Repeat("0", 64), RawSize: 1, StoredSize: 1,
		Chunks: []manifest.Chunk{{Key: "chunks/00000000.zst", RawSize: 1, StoredSize: 1, SHA256: strings.Repeat("0", 64)}}}
}

func appErrType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
}

func TestPlanBackup(t *testing.T) {
	ctx := context.Background()
	chain := []*manifest.Manifest{
		bk("f1", "full", "", 0, 100, 0),
		bk("i1", "incremental", "f1", 100, 150, 6),
		bk("i2", "incremental", "i1", 150, 180, 12),
	}
	c := testCatalog(t, 0, chain...)

	p, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	require.NoError(t, err)
	assert.Equal(t, BackupPlan{Type: "incremental", ParentID: "i2", FromLSN: 180, ChainLength: 4}, *p)

	p, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "differential"})
	require.NoError(t, err)
	assert.Equal(t, BackupPlan{Type: "differential", ParentID: "f1", FromLSN: 100, ChainLength: 2}, *p)

	p, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "full"})
	require.NoError(t, err)
	assert.Equal(t, "full", p.Type)

	// A chain that would exceed max_chain_length becomes a full.
	c = testCatalog(t, 3, chain...)
	p, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	require.NoError(t, err)
	assert.Equal(t, "full", p.Type)
	assert.Contains(t, p.Note, "max_chain_length 3")
}

func TestPlanBackupWithoutBase(t *testing.T) {
	ctx := context.Background()
	c := testCatalog(t, 0)
	_, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	assert.Equal(t, ErrNoBase, appErrType(err))
	assert.Contains(t, err.Error(), "--auto-full")
	p, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental", AutoFull: true})
	require.NoError(t, err)
	assert.Equal(t, "full", p.Type)

	// An incremental alone (its full gone) is no base for another one.
	c = testCatalog(t, 0, bk("i1", "incremental", "f0", 100, 150, 6))
	_, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	assert.Equal(t, ErrBrokenChain, appErrType(err))
	_, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "differential"})
	assert.Equal(t, ErrNoBase, appErrType(err))

	_, err = c.PlanBackup(ctx, PlanRequest{Instance: "nope", Type: "full"})
	assert.Equal(t, ErrUnknownInstance, appErrType(err))
	_, err = c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "weekly"})
	assert.Equal(t, ErrInvalidRequest, appErrType(err))
}

func TestResolveChain(t *testing.T) {
	ctx := context.Background()
	c := testCatalog(t, 0, bk("f1", "full", "", 0, 100, 0), bk("d1", "differential", "f1", 100, 200, 6), bk("x", "incremental", "gone", 300, 400, 7))
	got, err := c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "d1"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "f1", got[0].BackupID)
	_, err = c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "x"})
	assert.Equal(t, ErrBrokenChain, appErrType(err))
	_, err = c.ResolveChain(ctx, BackupRef{Instance: "db1", BackupID: "nope"})
	assert.Equal(t, ErrBackupNotFound, appErrType(err))
}

// On an instance with encryption enabled, an incremental or differential
// is never based on a chain with an unencrypted member (old, or planted by
// a writer of the bucket): a restore would refuse that chain.
func TestPlanBackupSkipsUnencryptedBaseOfEncryptedInstance(t *testing.T) {
	ctx := context.Background()
	f1 := bk("f1", "full", "", 0, 100, 0)
	i1 := bk("i1", "incremental", "f1", 100, 150, 6)
	i1.Encrypted, i1.EncryptionKeyID = true, "local:00"
	c := testCatalog(t, 0, f1, i1)
	on := true
	c.Config.Instances[0].Encryption.Enabled = &on
	for _, typ := range []string{"incremental", "differential"} {
		_, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: typ})
		assert.Equal(t, ErrUnencrypted, appErrType(err), typ)
		p, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: typ, AutoFull: true})
		require.NoError(t, err)
		assert.Equal(t, "full", p.Type, typ)
		assert.Contains(t, p.Note, "unencrypted backup f1")
	}

	// The agent refuses a hand-written request on such a base too.
	a := &Agent{Host: "h1", Config: c.Config, Repo: c.Repo}
	err := a.checkBase(ctx, BackupParams{Instance: "db1", BackupID: "i2", Type: "differential", ParentID: "f1", FromLSN: 100})
	assert.Equal(t, ErrUnencrypted, appErrType(err))

	off := false
	c.Config.Instances[0].Encryption.Enabled = &off
	p, err := c.PlanBackup(ctx, PlanRequest{Instance: "db1", Type: "incremental"})
	require.NoError(t, err)
	assert.Equal(t, "i1", p.ParentID)
}
