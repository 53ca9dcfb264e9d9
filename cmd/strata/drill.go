package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/workflows"
)

func drillCmd(a *app) *cobra.Command {
	var (
		req                   workflows.DrillRequest
		wait, asJS            bool
		toTime, toGTID, toPos string
	)
	cmd := &cobra.Command{
		Use:   "drill INSTANCE [--backup ID] [--to-time T | --to-gtid G | --to-position F:P | --backup-only] [--wait]",
		Short: "Run a restore drill: restore onto a scratch server, verify, measure RTO and RPO (DrillWorkflow)",
		Long: "Restores the newest backup chain of the instance whose chain has no failed drill (or --backup), and with a target\n" +
			"a point in time (without one: the newest archived transaction when the binlog archive reaches past the backup,\n" +
			"unless --backup-only or drill.point_in_time: false), onto a scratch server on the drill host, verifies it (CHECK TABLE, table sums, GTID set), measures\n" +
			"RTO and RPO, removes the scratch server and writes the report to <instance>/drills/<id>.json. `strata drill ls` lists them.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Instance = args[0]
			in, err := a.loadFor(req.Instance)
			if err != nil {
				return err
			}
			if req.Target, err = parseTarget(toTime, toGTID, toPos); err != nil {
				return err
			}
			if req.DrillID == "" {
				req.DrillID = time.Now().UTC().Format(workflows.BackupIDFormat)
			}
			var res workflows.DrillResult
			_, err = a.start(cmd.Context(), workflows.DrillWorkflowID(req.Instance, req.DrillID), workflows.DrillWorkflowName, req, wait, &res,
				workflows.SearchAttributes(req.Instance, workflows.KindDrill, req.BackupID, a.cfg.DrillHost(in)))
			if !wait {
				return err
			}
			if err != nil {
				// The workflow wrote its report before it failed: show it.
				var ae *temporal.ApplicationError
				var det activities.DrillFailure
				if errors.As(err, &ae) && ae.Type() == activities.ErrDrillFailed && ae.Details(&det) == nil {
					if r, rerr := a.readDrill(cmd, req.Instance, det.DrillID); rerr == nil {
						if asJS {
							_ = printJSON(r)
						} else {
							printDrill(os.Stdout, r)
						}
					}
				}
				return err
			}
			if asJS {
				return printJSON(res)
			}
			printDrill(os.Stdout, &res.Report)
			for _, n := range res.Notes {
				fmt.Printf("  note      %s\n", n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.BackupID, "backup", "", "backup id to drill (default: the newest whose chain has no failed drill)")
	f.BoolVar(&req.BackupOnly, "backup-only", false, "drill the backup alone, without the replay to the newest archived transaction")
	f.StringVar(&toTime, "to-time", "", "point-in-time drill to this time (RFC 3339)")
	f.StringVar(&toGTID, "to-gtid", "", "point-in-time drill up to and including this GTID")
	f.StringVar(&toPos, "to-position", "", "point-in-time drill up to FILE:POSITION of the source's binlog")
	f.StringVar(&req.DrillID, "id", "", "drill id (default: now, e.g. 20261124T084500Z)")
	f.BoolVar(&wait, "wait", false, "wait for the drill to finish and print its report")
	f.BoolVar(&asJS, "json", false, "print the report as JSON (with --wait)")
	cmd.AddCommand(drillLsCmd(a))
	return cmd
}

func (a *app) readDrill(cmd *cobra.Command, instance, id string) (*drill.Report, error) {
	r, err := a.openRepoFor(cmd, instance)
	if err != nil {
		return nil, err
	}
	return drill.Read(cmd.Context(), r.Backend(), instance, id)
}

// printDrill prints one drill's report.
func printDrill(w io.Writer, r *drill.Report) {
	what := "backup " + r.BackupID
	if r.Target != "" {
		what += ", to " + r.Target
	}
	fmt.Fprintf(w, "drill %s of %s: %s (%s on %s)\n", r.DrillID, r.Instance, strings.ToUpper(r.Result), what, r.Host)
	if r.Passed() {
		exact := "estimated: no heartbeat table"
		if r.RPOExact {
			exact = "exact, from the heartbeat table"
		}
		fmt.Fprintf(w, "  RTO       %.1fs (drill start to verified serving)\n", r.RTOSeconds)
		fmt.Fprintf(w, "  RPO       %.1fs (%s)\n", r.RPOSeconds, exact)
	} else {
		fmt.Fprintf(w, "  error     %s\n", r.Error)
		if r.CorruptChunk != "" {
			fmt.Fprintf(w, "  chunk     %s\n", r.CorruptChunk)
		}
	}
	var ph []string
	for _, p := range r.Phases {
		ph = append(ph, fmt.Sprintf("%s %.1fs", p.Phase, p.Seconds))
	}
	fmt.Fprintf(w, "  phases    %s\n", strings.Join(ph, ", "))
	if len(r.Chain) > 0 {
		fmt.Fprintf(w, "  chain     %s\n", strings.Join(r.Chain, " -> "))
	}
	fmt.Fprintf(w, "  verified  %d tables checked, %d compared with the backup's sums (%d rows); GTID got %q want %q\n",
		r.TablesChecked, r.TablesCompared, r.Rows, r.GotGTIDSet, r.WantGTIDSet)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem   %s\n", p)
	}
	if !r.TornDown {
		fmt.Fprintf(w, "  WARNING   the scratch server or its files (%s) may be left on %s\n", r.Datadir, r.Host)
	}
	fmt.Fprintf(w, "  report    %s\n", drill.ReportKey(r.Instance, r.DrillID))
}

func drillLsCmd(a *app) *cobra.Command {
	var asJS bool
	cmd := &cobra.Command{
		Use:   "ls INSTANCE",
		Short: "List an instance's drills, newest first, from the repository (no Temporal needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.openRepoFor(cmd, args[0])
			if err != nil {
				return err
			}
			h, err := drill.History(cmd.Context(), r.Backend(), args[0])
			if err != nil {
				return err
			}
			if asJS {
				if h == nil {
					h = []*drill.Report{}
				}
				return printJSON(h)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "DRILL ID\tRESULT\tBACKUP\tTARGET\tHOST\tSTARTED (UTC)\tRTO\tRPO\tPHASES\tERROR")
			for _, d := range h {
				var ph []string
				for _, p := range d.Phases {
					ph = append(ph, fmt.Sprintf("%s=%.1fs", p.Phase, p.Seconds))
				}
				target := d.Target
				if target == "" {
					target = "-"
				}
				rpo := fmt.Sprintf("%.1fs", d.RPOSeconds)
				if !d.RPOExact {
					rpo += "~"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1fs\t%s\t%s\t%s\n", d.DrillID, d.Result, d.BackupID, target, d.Host,
					d.Started.UTC().Format("2006-01-02 15:04:05"), d.RTOSeconds, rpo, strings.Join(ph, " "), d.Error)
			}
			if len(h) == 0 {
				fmt.Fprintf(tw, "(no drills of %s in %s)\n", args[0], r.String())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJS, "json", false, "print as JSON")
	return cmd
}
