package tests

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/workflows"
)

// Instances that are misconfigured in one way each; all owned by agent h1.
const (
	badPassword extraInstance = `
  - id: badpw
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_WRONG}
    datadir: %[2]s
`
	unreachable extraInstance = `
  - id: down
    host: h1
    connect: {address: "127.0.0.1:1", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
`
	noTool extraInstance = `
  - id: notool
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    tools: {mariabackup: /nonexistent/mariabackup}
`
	otherHost extraInstance = `
  - id: elsewhere
    host: h9
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
`
)

func TestBadInputFailsClearlyAndLeavesNothing(t *testing.T) {
	t.Setenv("STRATA_E2E_WRONG", "definitely-not-the-password")
	s := newStack(t, badPassword, unreachable, noTool, otherHost)
	var res workflows.BackupResult

	t.Run("wrong password", func(t *testing.T) {
		_, err := s.run("backup/badpw/x", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "badpw", BackupID: "x"}, &res)
		requireAppError(t, err, "AuthFailed", "password")
		assertNothingStored(t, s, "badpw")
	})
	t.Run("unreachable server", func(t *testing.T) {
		_, err := s.run("backup/down/x", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "down", BackupID: "x"}, &res)
		requireAppError(t, err, "ServerUnreachable", "connect.address")
		assertNothingStored(t, s, "down")
	})
	t.Run("missing tool", func(t *testing.T) {
		_, err := s.run("backup/notool/x", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "notool", BackupID: "x"}, &res)
		requireAppError(t, err, "ToolMissing", "tools.mariabackup")
		assertNothingStored(t, s, "notool")
	})
	t.Run("unknown instance", func(t *testing.T) {
		_, err := s.run("backup/nope/x", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "nope", BackupID: "x"}, &res)
		requireAppError(t, err, "UnknownInstance", `unknown instance "nope"`)
	})
	t.Run("unknown backup id", func(t *testing.T) {
		var rr workflows.RestoreResult
		target := filepath.Join(t.TempDir(), "r")
		_, err := s.run("restore/x", workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "missing", TargetDir: target}, &rr)
		requireAppError(t, err, "BackupNotFound", `backup "missing"`)
		_, statErr := os.Stat(target)
		assert.True(t, os.IsNotExist(statErr), "target untouched")
	})
	t.Run("agent not running", func(t *testing.T) {
		_, err := s.run("backup/elsewhere/x", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "elsewhere", BackupID: "x"}, &res)
		requireAppError(t, err, "AgentUnavailable", "strata agent --host h9")
	})
}

func assertNothingStored(t *testing.T, s *stack, instance string) {
	t.Helper()
	objs, err := s.repo.Backend().List(s.ctx, instance+"/")
	require.NoError(t, err)
	assert.Empty(t, objs, "no partial objects for %s", instance)
}
