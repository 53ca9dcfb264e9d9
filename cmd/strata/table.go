package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-backup/strata/workflows"
)

// tableFlags are restore's flags of a single-table restore (--into and
// --replace are the RestoreRequest's).
type tableFlags struct {
	table, as, id string
}

// restoreTable starts TableRestoreWorkflow and, with wait, prints its
// result.
func (a *app) restoreTable(cmd *cobra.Command, r workflows.RestoreRequest, f tableFlags, wait, asJS bool) error {
	req := workflows.TableRestoreRequest{Instance: r.Instance, Table: f.table, Into: r.Into, As: f.as, Replace: r.Replace,
		BackupID: r.BackupID, Target: r.Target, RestoreID: f.id}
	if req.Into == "" {
		req.Into = req.Instance
	}
	into, err := a.cfg.Instance(req.Into)
	if err != nil {
		return fmt.Errorf("--into: %w", err)
	}
	if req.RestoreID == "" {
		req.RestoreID = time.Now().UTC().Format(workflows.BackupIDFormat)
	}
	var res workflows.TableRestoreResult
	_, err = a.start(cmd.Context(), workflows.TableRestoreWorkflowID(req.Instance, req.RestoreID), workflows.TableRestoreWorkflowName, req, wait, &res,
		workflows.SearchAttributes(req.Instance, workflows.KindTableRestore, req.BackupID, into.Host))
	if err != nil || !wait {
		return err
	}
	if asJS {
		return printJSON(res)
	}
	printTableRestore(os.Stdout, &res)
	return nil
}

// printTableRestore prints a table restore's result.
func printTableRestore(w io.Writer, r *workflows.TableRestoreResult) {
	im := &r.Import
	fmt.Fprintf(w, "restored table %s of %s into %s as %s in %.1fs (%s)\n", im.Source, r.Instance, r.Into, im.Dest, r.Seconds, im.Method)
	fmt.Fprintf(w, "  as of     %s\n", r.Point)
	fmt.Fprintf(w, "  backup    %s (chain %s)\n", r.BackupID, strings.Join(r.Chain, " -> "))
	fmt.Fprintf(w, "  rows      %d on the scratch server, %d on %s\n", im.SourceSum.Rows, im.DestSum.Rows, r.Into)
	fmt.Fprintf(w, "  checksum  %s on the scratch server, %s on %s\n", im.SourceSum.Checksum, im.DestSum.Checksum, r.Into)
	fmt.Fprintf(w, "  moved     %s of tablespace files (%s, row format %s)\n", human(im.Bytes), im.Engine, im.RowFormat)
	if im.Replaced {
		fmt.Fprintf(w, "  replaced  the table %s that was there\n", im.Dest)
	}
	var ph []string
	for _, p := range r.Phases {
		ph = append(ph, fmt.Sprintf("%s %.1fs", p.Phase, p.Seconds))
	}
	fmt.Fprintf(w, "  phases    %s\n", strings.Join(ph, ", "))
	ph = ph[:0]
	for _, p := range im.Phases {
		ph = append(ph, fmt.Sprintf("%s %.2fs", p.Phase, p.Seconds))
	}
	fmt.Fprintf(w, "  import    %s\n", strings.Join(ph, ", "))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note      %s\n", n)
	}
	if !r.TornDown {
		fmt.Fprintf(w, "  WARNING   the scratch server or its files may be left on %s\n", r.Host)
	}
}
