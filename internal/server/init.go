package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
)

// Initialize creates a new datadir for a server of flavor f (binary: its
// mariadbd or mysqld, as FindBinaryFor gives it): mariadb-install-db, or
// mysqld --initialize-insecure. Its root@localhost has no password, so the
// datadir must only be served on a private socket (Options.PrivateSocket)
// until its accounts are set. datadir must not exist or be empty.
func Initialize(ctx context.Context, f flavor.Name, binary, datadir string) error {
	if entries, err := os.ReadDir(datadir); err == nil && len(entries) > 0 {
		return fmt.Errorf("initialize %s: the directory is not empty", datadir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("initialize %s: %w", datadir, err)
	}
	if err := os.MkdirAll(datadir, 0o750); err != nil {
		return fmt.Errorf("initialize %s: %w", datadir, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(datadir), ".strata-init-")
	if err != nil {
		return fmt.Errorf("initialize %s: %w", datadir, err)
	}
	defer os.RemoveAll(tmp)
	var cmd *exec.Cmd
	if f == flavor.MySQL {
		args := []string{"--no-defaults", "--initialize-insecure", "--datadir=" + datadir, "--tmpdir=" + tmp}
		if os.Geteuid() == 0 {
			args = append(args, "--user=root")
		}
		cmd = exec.CommandContext(ctx, binary, args...)
	} else {
		installDB, err := installDBFor(binary)
		if err != nil {
			return err
		}
		args := []string{"--no-defaults", "--datadir=" + datadir, "--auth-root-authentication-method=normal",
			"--skip-test-db", "--skip-name-resolve", "--basedir=" + filepath.Dir(filepath.Dir(binary)), "--tmpdir=" + tmp}
		if os.Geteuid() == 0 {
			args = append(args, "--user=root")
		}
		cmd = exec.CommandContext(ctx, installDB, args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Cancelled: the whole group, the bootstrap server the script starts too.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		return fmt.Errorf("initialize %s with %s: %v\n%s", datadir, filepath.Base(cmd.Path), err, strings.Join(lines, "\n"))
	}
	return nil
}

// installDBFor finds mariadb-install-db for a mariadbd binary: in PATH, or
// in the bin directory of the binary's installation.
func installDBFor(mariadbd string) (string, error) {
	// The one of the binary's own installation first: another version's
	// would write its own system tables.
	p := filepath.Join(filepath.Dir(filepath.Dir(mariadbd)), "bin", "mariadb-install-db")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("mariadb-install-db"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: mariadb-install-db is not in PATH nor beside %s (install the MariaDB server package)", ErrNoBinary, mariadbd)
}
