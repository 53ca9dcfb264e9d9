package physical

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/mysqlx"
)

// ReplayParams describe applying rebuilt binlog files to a running server
// with `mariadb-binlog | mariadb` (mysqlbinlog | mysql for MySQL).
type ReplayParams struct {
	Flavor   flavor.Name
	Files    []string
	StartPos uint32 // in the first file
	Endpoint mysqlx.Endpoint
	// BinlogTool and Client override the tools' paths.
	BinlogTool, Client string
	ScratchDir         string
}

// ReplayWithClient decodes the files with the binlog tool and pipes the
// statements into the client. Both run in their own process group and are
// killed when ctx ends.
func ReplayWithClient(ctx context.Context, p ReplayParams) error {
	binName, cliName, pkg := "mariadb-binlog", "mariadb", "mariadb-client"
	if p.Flavor == flavor.MySQL {
		binName, cliName, pkg = "mysqlbinlog", "mysql", "mysql-client"
	}
	bin, err := locate(p.BinlogTool, binName, pkg, "PATH")
	if err != nil {
		return err
	}
	cli, err := locate(p.Client, cliName, pkg, "PATH")
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(p.ScratchDir, "strata-replay-")
	if err != nil {
		return fmt.Errorf("create scratch dir: %w", err)
	}
	defer os.RemoveAll(work)
	if err := markOwner(work); err != nil {
		return err
	}
	cnf := filepath.Join(work, "client.cnf")
	if err := WriteClientCnf(cnf, p.Endpoint); err != nil {
		return err
	}
	args := []string{"--no-defaults"}
	if p.StartPos > 4 {
		args = append(args, "--start-position="+strconv.FormatUint(uint64(p.StartPos), 10))
	}
	args = append(args, p.Files...)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dec := command(cctx, bin, args...)
	app := command(cctx, cli, "--defaults-file="+cnf, "--binary-mode", "--max-allowed-packet=1G")
	decErr, appErr := newTail(30, nil), newTail(30, nil)
	dec.Stderr, app.Stderr, app.Stdout = decErr, appErr, appErr
	pr, pw := io.Pipe()
	dec.Stdout, app.Stdin = pw, pr
	if err := app.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cli, err)
	}
	if err := dec.Start(); err != nil {
		cancel()
		_ = app.Wait()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	derr := dec.Wait()
	_ = pw.CloseWithError(derr)
	if derr != nil {
		cancel()
	}
	aerr := app.Wait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case derr != nil:
		return &ToolError{Tool: binName, Op: "decode binlogs", Err: derr, Tail: decErr.lastLines(20)}
	case aerr != nil:
		return &ToolError{Tool: cliName, Op: "apply binlogs", Err: aerr, Tail: appErr.lastLines(20)}
	}
	return nil
}
