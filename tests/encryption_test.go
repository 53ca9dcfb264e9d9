package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/verify"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// markerRow is written many times into a table of the source; stored
// unencrypted and uncompressed, a backup shows it in the clear.
const markerRow = "STRATA-MARKER-ROW-7d3f"

// Two more instances on the source server, both storing chunks
// uncompressed: "enc" is encrypted (the config's default once a key is
// set), "plain" opts out — it shows that the marker would be visible.
const markerInstances extraInstance = `
  - id: enc
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    backup: {compression: none}
  - id: plain
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    backup: {compression: none}
    encryption: {enabled: false}
`

// withTopLevel adds top-level YAML (e.g. an encryption: block) to the test
// config, beside a local repository in the test's temp dir.
func withTopLevel(t *testing.T, yaml string) stackOption {
	root := filepath.Join(t.TempDir(), "repo")
	return stackOptionFunc(func(s *stackSetup) {
		s.storage = "storage:\n  type: local\n  local:\n    root: " + root + "\n" + strings.TrimRight(yaml, "\n")
	})
}

// newKeyFile writes a new random key encryption key (hex) and returns its
// path and id.
func newKeyFile(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	raw := make([]byte, crypt.KeySize)
	_, _ = rand.Read(raw)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(hex.EncodeToString(raw)+"\n"), 0o600))
	k, err := crypt.NewLocalKEK(raw)
	require.NoError(t, err)
	return p, k.ID()
}

// withConfig writes a variant of the stack's config (edit changes its
// text) and loads it.
func (s *stack) withConfig(name string, edit func(string) string) (*config.Config, string) {
	s.t.Helper()
	orig, err := os.ReadFile(s.cfgPath)
	require.NoError(s.t, err)
	p := filepath.Join(filepath.Dir(s.cfgPath), name)
	require.NoError(s.t, os.WriteFile(p, []byte(edit(string(orig))), 0o600))
	cfg, err := config.Load(p)
	require.NoError(s.t, err)
	return cfg, p
}

// replaceAgent stops h1's agent and starts one with another config.
func (s *stack) replaceAgent(cfg *config.Config) {
	s.t.Helper()
	if s.agent != nil {
		s.agent.Stop()
	}
	s.agent = workers.NewAgent(s.client, cfg, "h1", s.repo, s.log)
	require.NoError(s.t, s.agent.Start())
}

// startAgent starts an in-process agent of another host with cfg.
func (s *stack) startAgent(cfg *config.Config, host string) {
	s.t.Helper()
	ag := workers.NewAgent(s.client, cfg, host, s.repo, s.log)
	require.NoError(s.t, ag.Start())
	s.t.Cleanup(ag.Stop)
}

// scanRepo returns the files under the repository root that contain b.
func scanRepo(t *testing.T, root, under string, b []byte) (hits []string, files int) {
	t.Helper()
	require.NoError(t, filepath.Walk(filepath.Join(root, under), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(data, b) {
			hits = append(hits, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	}))
	return hits, files
}

func TestEncryptedBackupsRestoreAndSurviveKeyRotation(t *testing.T) {
	keys := t.TempDir()
	k1, id1 := newKeyFile(t, keys, "kek1")
	k2, id2 := newKeyFile(t, keys, "kek2")
	s := newStack(t, withTopLevel(t, "agent:\n  bandwidth_limit: 1GiB\nencryption:\n  key_file: "+k1+"\n"), markerInstances)
	root := s.cfg.Storage.Local.Root
	assert.Equal(t, int64(1<<30), s.agent.Activities.Limiter.Limit(), "one limiter per agent, at agent.bandwidth_limit")
	db, err := s.src.DB("")
	require.NoError(t, err)
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE e2e",
		"CREATE TABLE e2e.marker (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB",
		"INSERT INTO e2e.marker (v) VALUES " + strings.Repeat("('"+markerRow+"'),", 3999) + "('" + markerRow + "')",
		"CREATE TABLE e2e.numbered (id INT PRIMARY KEY, payload VARCHAR(255)) ENGINE=InnoDB",
	} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	insertRows(t, db, 1, 20)
	flushCheckpoint(t, db)

	// Control: the same data, unencrypted and uncompressed, shows the marker.
	s.backupOf("plain", "p1", "full")
	control, _ := scanRepo(t, root, "plain", []byte(markerRow))
	require.NotEmpty(t, control, "an unencrypted, uncompressed backup holds the marker in the clear")

	// Encrypted: no object of the instance holds it, nor anything else.
	e1 := s.backupOf("enc", "e1", "full")
	assert.True(t, e1.Encrypted)
	assert.Equal(t, id1, e1.EncryptionKeyID)
	hits, files := scanRepo(t, root, "enc", []byte(markerRow))
	assert.Empty(t, hits, "encrypted backup stores the marker row in the clear")
	t.Logf("scanned %d objects of the encrypted instance: no marker (the unencrypted control has it in %d)", files, len(hits))
	m, err := s.repo.ReadManifest(s.ctx, "enc", "e1")
	require.NoError(t, err)
	assert.True(t, m.Encrypted)
	assert.Equal(t, id1, m.EncryptionKeyID)
	assert.Equal(t, "none", m.Compression)
	for _, c := range m.Chunks {
		assert.Regexp(t, `^chunks/[0-9a-f]{32}\.enc$`, c.Key)
	}
	objs, err := s.repo.BackupKeys("enc", "e1").List(s.ctx)
	require.NoError(t, err)
	require.Len(t, objs, 1, "the wrapped data key is stored beside the backup")
	assert.Equal(t, id1, objs[0].KEKID)
	_, err = os.Stat(filepath.Join(root, "enc/backups/e1/keys", repo.KeyObjectName(id1)))
	require.NoError(t, err)

	// Verification needs no key (the worker has none).
	rep, err := verify.Backups(s.ctx, s.repo, "enc", nil, 2, nil)
	require.NoError(t, err)
	assert.True(t, rep.OK(), "%v", rep.Problems)
	assert.True(t, s.verify("enc", "e1").OK)

	// Restore with the key.
	rdb, _ := s.restoreAndOpenOf("enc", "e1")
	var n int
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*) FROM e2e.marker WHERE v = ?", markerRow).Scan(&n))
	assert.Equal(t, 4000, n)

	// Agents without the key: DecryptFailed, naming the ids on both sides.
	noKey, _ := s.withConfig("nokey.yaml", func(y string) string {
		return strings.Replace(y, "encryption:\n  key_file: "+k1+"\n", "", 1)
	})
	require.False(t, noKey.Encryption.Configured())
	s.startAgent(noKey, "h2")
	otherKey, _ := s.withConfig("otherkey.yaml", func(y string) string { return strings.Replace(y, k1, k2, 1) })
	s.startAgent(otherKey, "h3")
	for host, want := range map[string][]string{
		"h2": {id1, "this agent has no encryption key configured", "encryption.key_file"},
		"h3": {id1, `this agent has "` + id2 + `"`, "encryption.old_key_files"},
	} {
		target := filepath.Join(t.TempDir(), "restore-"+host)
		var res workflows.RestoreResult
		_, err := s.run("restore/"+host+":"+target, workflows.RestoreWorkflowName, workflows.RestoreRequest{
			Instance: "enc", BackupID: "e1", TargetDir: target, TargetHost: host,
		}, &res)
		for _, w := range want {
			requireAppError(t, err, "DecryptFailed", w)
		}
		t.Logf("agent %s: %v", host, err)
		_, serr := os.Stat(target)
		assert.True(t, os.IsNotExist(serr), "target untouched")
	}

	// An agent whose key file is bad does not start, and says why.
	require.NoError(t, os.WriteFile(filepath.Join(keys, "broken"), []byte("not a key\n"), 0o600))
	badCfg, badPath := s.withConfig("badkey.yaml", func(y string) string { return strings.Replace(y, k1, filepath.Join(keys, "broken"), 1) })
	err = workers.NewAgent(s.client, badCfg, "h4", s.repo, s.log).Start()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "encryption.key_file")
	assert.Contains(t, err.Error(), "must hold 32 bytes")
	out, err := strataCLI(t, "agent", "--host", "h4", "--config", badPath)
	require.Error(t, err, out)
	assert.Contains(t, out, "encryption.key_file: key file "+filepath.Join(keys, "broken")+" must hold 32 bytes")

	// Rotation: the agent gets the new key and keeps the old one as old.
	rotated, rotatedPath := s.withConfig("rotated.yaml", func(y string) string {
		return strings.Replace(y, "  key_file: "+k1+"\n", "  key_file: "+k2+"\n  old_key_files: ["+k1+"]\n", 1)
	})
	s.replaceAgent(rotated)
	out, err = strataCLI(t, "key", "id", "--config", rotatedPath)
	require.NoError(t, err, out)
	assert.Equal(t, id2+"\n"+id1+" (old)\n", out)
	out, err = strataCLI(t, "key", "rotate", "enc", "--config", rotatedPath)
	require.NoError(t, err, out)
	t.Logf("strata key rotate enc:\n%s", out)
	assert.Contains(t, out, `backup "e1" of instance "enc": wrapped by `+id2+` (unwrapped with `+id1+`)`)

	// A new (incremental) backup is wrapped by the new key.
	insertRows(t, db, 21, 40)
	e2 := s.backupOf("enc", "e2", "incremental")
	assert.Equal(t, id2, e2.EncryptionKeyID)
	assert.Equal(t, "e1", e2.ParentID)

	out, err = strataCLI(t, "key", "rotate", "--remove-old", "--config", rotatedPath)
	require.NoError(t, err, out)
	t.Logf("strata key rotate --remove-old:\n%s", out)
	assert.Contains(t, out, `backup "e1" of instance "enc": already wrapped by `+id2+`; removed the wrapping by `+id1)
	assert.Contains(t, out, `backup "e2" of instance "enc": already wrapped by `+id2)
	for _, id := range []string{"e1", "e2"} {
		objs, err := s.repo.BackupKeys("enc", id).List(s.ctx)
		require.NoError(t, err)
		require.Len(t, objs, 1)
		assert.Equal(t, id2, objs[0].KEKID, "only the new key's wrapping is left")
	}

	// With only the new key, both the old and the new backup restore.
	onlyNew, _ := s.withConfig("onlynew.yaml", func(y string) string { return strings.Replace(y, k1, k2, 1) })
	s.replaceAgent(onlyNew)
	rdb, _ = s.restoreAndOpenOf("enc", "e1")
	require.NoError(t, rdb.QueryRow("SELECT COUNT(*) FROM e2e.marker WHERE v = ?", markerRow).Scan(&n))
	assert.Equal(t, 4000, n)
	cnt, hi := countRows(t, rdb)
	assert.Equal(t, 20, cnt)
	assert.Equal(t, 20, hi)
	rdb, rres := s.restoreAndOpenOf("enc", "e2")
	assert.Equal(t, []string{"e1", "e2"}, rres.Chain)
	cnt, hi = countRows(t, rdb)
	assert.Equal(t, 40, cnt)
	assert.Equal(t, 40, hi)
	// Every object of the repository but the opted-out instance's.
	hits, files = scanRepo(t, root, "", []byte(markerRow))
	var leaked []string
	for _, h := range hits {
		if !strings.HasPrefix(h, "plain/") {
			leaked = append(leaked, h)
		}
	}
	assert.Empty(t, leaked, "objects holding the marker in the clear")
	t.Logf("scanned all %d objects of the repository: the marker is only in the %d objects of the unencrypted instance", files, len(hits))
}

// strataCLI runs the strata binary with explicit arguments (at most two
// minutes) and returns its combined output.
func strataCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, strataBinary(t), args...).CombinedOutput()
	return string(out), err
}
