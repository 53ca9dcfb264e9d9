package main

import (
	"database/sql"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/mysqlx"
)

// devCmd holds the helpers the demo uses: generate sample data and compare
// a restored server with its source.
func devCmd(a *app) *cobra.Command {
	dev := &cobra.Command{Use: "dev", Short: "Demo and development helpers (sample data, checksum comparison)"}
	var schema, size string
	seed := &cobra.Command{
		Use:   "seed INSTANCE",
		Short: "Create a schema of generated sample data on an instance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.load(); err != nil {
				return err
			}
			n, err := config.ParseByteSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			db, err := a.openInstance(cmd, args[0], mysqlx.Endpoint{})
			if err != nil {
				return err
			}
			defer db.Close()
			t0 := time.Now()
			err = demo.Seed(cmd.Context(), db, schema, n, func(s string) { fmt.Fprintln(os.Stderr, "  "+s) })
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "seeded %s on %s in %.1fs\n", schema, args[0], time.Since(t0).Seconds())
			return nil
		},
	}
	seed.Flags().StringVar(&schema, "schema", "demo", "schema to create (must not exist)")
	seed.Flags().StringVar(&size, "size", "300MiB", "approximate amount of data")

	var addr, sock string
	compare := &cobra.Command{
		Use:   "compare INSTANCE --address HOST:PORT|--socket PATH",
		Short: "Compare every table's checksum between an instance and a restored copy (same credentials)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.load(); err != nil {
				return err
			}
			if addr == "" && sock == "" {
				return fmt.Errorf("--address or --socket of the restored server is required")
			}
			src, err := a.openInstance(cmd, args[0], mysqlx.Endpoint{})
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := a.openInstance(cmd, args[0], mysqlx.Endpoint{Address: addr, Socket: sock})
			if err != nil {
				return err
			}
			defer dst.Close()
			a1, err := demo.Checksums(cmd.Context(), src, schema)
			if err != nil {
				return err
			}
			b1, err := demo.Checksums(cmd.Context(), dst, schema)
			if err != nil {
				return err
			}
			tables := make([]string, 0, len(a1))
			for t := range a1 {
				tables = append(tables, t)
			}
			sort.Strings(tables)
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TABLE\tSOURCE\tRESTORED\t")
			for _, t := range tables {
				mark := "ok"
				if a1[t] != b1[t] {
					mark = "DIFFERENT"
				}
				fmt.Fprintf(tw, "%s.%s\t%s\t%s\t%s\n", schema, t, a1[t], b1[t], mark)
			}
			_ = tw.Flush()
			if diffs := demo.CompareChecksums(a1, b1); len(diffs) > 0 {
				for _, d := range diffs {
					fmt.Fprintln(os.Stderr, "  "+d)
				}
				return fmt.Errorf("%d of %d tables differ", len(diffs), len(a1))
			}
			if len(a1) == 0 {
				return fmt.Errorf("schema %s has no tables on %s", schema, args[0])
			}
			fmt.Printf("all %d tables match\n", len(a1))
			return nil
		},
	}
	compare.Flags().StringVar(&schema, "schema", "demo", "schema to compare")
	compare.Flags().StringVar(&addr, "address", "", "restored server's host:port")
	compare.Flags().StringVar(&sock, "socket", "", "restored server's unix socket")
	dev.AddCommand(seed, compare)
	return dev
}

// openInstance connects to an instance with its configured credentials; a
// non-empty override address/socket points the same credentials elsewhere.
func (a *app) openInstance(cmd *cobra.Command, id string, override mysqlx.Endpoint) (*sql.DB, error) {
	in, err := a.cfg.Instance(id)
	if err != nil {
		return nil, err
	}
	pw, err := in.Password()
	if err != nil {
		return nil, err
	}
	ep := mysqlx.Endpoint{Socket: in.Connect.Socket, Address: in.Connect.Address, User: in.Connect.User, Password: pw}
	if override.Address != "" || override.Socket != "" {
		ep.Address, ep.Socket = override.Address, override.Socket
	}
	return mysqlx.Open(cmd.Context(), ep)
}
