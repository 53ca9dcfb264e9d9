package replay

import (
	"bufio"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/testdb"
)

// listeningTCP returns the TCP ports process pid listens on.
func listeningTCP(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	require.NoError(t, err)
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	require.NotEmpty(t, inodes, "the server has sockets (its unix socket at least)")
	var ports []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ... inode (field 9)
			if len(fields) > 9 && fields[3] == "0A" && inodes[fields[9]] {
				ports = append(ports, fields[1])
			}
		}
		fh.Close()
	}
	return ports
}

// The replay server runs without grant tables: whoever reaches it is root.
// Its socket must be in a directory only the agent's user can enter, and it
// must not listen on TCP at all.
func TestReplayServerIsPrivate(t *testing.T) {
	dst := testdb.ForTest(t, testdb.Options{})
	require.NoError(t, dst.Stop())
	ctx := context.Background()
	st, err := server.Start(ctx, ServerOptions("", dst.Datadir, []string{"--skip-grant-tables", "--skip-log-bin"}, nil))
	require.NoError(t, err)
	defer func() { _ = server.Stop(ctx, st) }()

	dir := filepath.Dir(st.Socket)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "socket dir %s", dir)
	assert.NotEqual(t, filepath.Dir(dst.Datadir), dir, "not beside the datadir, where others may reach it")
	assert.Empty(t, listeningTCP(t, st.PID), "the replay server listens on no TCP port")

	db, err := sql.Open("mysql", mysqlx.Endpoint{Socket: st.Socket, User: "root"}.DSN())
	require.NoError(t, err)
	defer db.Close()
	var skip int
	require.NoError(t, db.QueryRow("SELECT @@skip_networking").Scan(&skip))
	assert.Equal(t, 1, skip)

	require.NoError(t, server.Stop(ctx, st))
	assert.NoDirExists(t, dir, "Stop removes the socket dir")
}

// The check of listeningTCP itself: a server with a port is seen listening.
func TestListeningTCPSeesAPort(t *testing.T) {
	srv := testdb.ForTest(t, testdb.Options{})
	assert.NotEmpty(t, listeningTCP(t, srv.PID()))
}
