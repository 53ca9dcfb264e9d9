package activities

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/testdb"
)

// The agent writes the heartbeat table of each instance it owns that sets
// one, and of no other; stop ends the writers.
func TestRunHeartbeats(t *testing.T) {
	srv := testdb.ForTest(t, testdb.Options{})
	t.Setenv("HB_PASSWORD", srv.Password)
	c, err := config.Parse([]byte(fmt.Sprintf(`
storage: {local: {root: %[1]s}}
instances:
  - {id: db1, host: h1, connect: {address: "127.0.0.1:%[2]d", user: root, password_env: HB_PASSWORD}, datadir: %[3]s,
     heartbeat: {table: strata.heartbeat, every: 20ms}}
  - {id: db2, host: h1, connect: {address: "127.0.0.1:%[2]d", user: root, password_env: HB_PASSWORD}, datadir: %[3]s}
  - {id: db3, host: h2, connect: {address: "127.0.0.1:%[2]d", user: root, password_env: HB_PASSWORD}, datadir: %[3]s,
     heartbeat: {table: other.heartbeat}}
`, t.TempDir(), srv.Port, srv.Datadir)))
	require.NoError(t, err)
	db, err := srv.DB("")
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()

	stop := RunHeartbeats(&Agent{Host: "h1", Config: c})
	var first time.Time
	require.Eventually(t, func() bool { first, err = drill.ReadHeartbeat(ctx, db, "strata.heartbeat"); return err == nil }, time.Minute, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		next, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat")
		return err == nil && next.After(first)
	}, time.Minute, 10*time.Millisecond, "the row is kept current")
	stop()

	var id, host string
	require.NoError(t, db.QueryRow("SELECT id, host FROM strata.heartbeat").Scan(&id, &host))
	assert.Equal(t, []string{"db1", "h1"}, []string{id, host})
	_, err = drill.ReadHeartbeat(ctx, db, "other.heartbeat")
	assert.True(t, errors.Is(err, drill.ErrNoHeartbeat), "another host's instance is not written: %v", err)

	// Stopped: no more writes.
	last, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	again, err := drill.ReadHeartbeat(ctx, db, "strata.heartbeat")
	require.NoError(t, err)
	assert.Equal(t, last, again)
}
