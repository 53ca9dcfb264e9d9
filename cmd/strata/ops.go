package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// start starts a workflow on the strata task queue and, with wait, follows
// it to the end and decodes its result.
func (a *app) start(ctx context.Context, id, wfType string, input any, wait bool, result any) (client.WorkflowRun, error) {
	c, err := workers.Dial(a.cfg, a.log)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                a.cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
	}, wfType, input)
	if err != nil {
		return nil, fmt.Errorf("start %s %s: %w", wfType, id, err)
	}
	fmt.Fprintf(os.Stderr, "started %s  workflow id %s  run id %s\n", wfType, run.GetID(), run.GetRunID())
	if !wait {
		fmt.Fprintf(os.Stderr, "follow it with: temporal workflow show --workflow-id %s --namespace %s\n", run.GetID(), a.cfg.Temporal.Namespace)
		return run, nil
	}
	return run, run.Get(ctx, result)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func backupCmd(a *app) *cobra.Command {
	var (
		id, typ    string
		wait, asJS bool
	)
	cmd := &cobra.Command{
		Use:   "backup INSTANCE",
		Short: "Take a hot physical backup of an instance (BackupWorkflow)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.load(); err != nil {
				return err
			}
			if _, err := a.cfg.Instance(args[0]); err != nil {
				return err
			}
			if id == "" {
				id = time.Now().UTC().Format(workflows.BackupIDFormat)
			}
			var res workflows.BackupResult
			_, err := a.start(cmd.Context(), "backup/"+args[0]+"/"+id, workflows.BackupWorkflowName,
				workflows.BackupRequest{Instance: args[0], BackupID: id, Type: typ}, wait, &res)
			if err != nil || !wait {
				return err
			}
			if asJS {
				return printJSON(res)
			}
			fmt.Printf("backup %s of %s complete (%s)\n", res.BackupID, res.Instance, res.Type)
			fmt.Printf("  size        %s raw, %s stored (%.2fx) in %d chunks, %s\n", human(res.RawSize), human(res.StoredSize),
				ratio(res.RawSize, res.StoredSize), res.Chunks, res.Compression)
			fmt.Printf("  time        %.1fs, %.1f MB/s; commits blocked %.3fs, DDL blocked %.3fs\n", res.DurationSeconds,
				res.ThroughputMBps, res.CommitsBlockedSeconds, res.DDLBlockedSeconds)
			fmt.Printf("  consistent  %s:%d  gtid %s  lsn %d\n", res.BinlogFile, res.BinlogPos, res.GTIDSet, res.ToLSN)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "backup id (default: the UTC start time, e.g. 20261124T084500Z)")
	cmd.Flags().StringVar(&typ, "type", "full", "backup type")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the backup to finish and print its result")
	cmd.Flags().BoolVar(&asJS, "json", false, "print the result as JSON (with --wait)")
	return cmd
}

func restoreCmd(a *app) *cobra.Command {
	var (
		req        workflows.RestoreRequest
		wait, asJS bool
	)
	cmd := &cobra.Command{
		Use:   "restore INSTANCE --backup ID --target-dir DIR [--start --port N]",
		Short: "Restore a backup into a new datadir (RestoreWorkflow)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.load(); err != nil {
				return err
			}
			req.Instance = args[0]
			in, err := a.cfg.Instance(req.Instance)
			if err != nil {
				return err
			}
			if req.BackupID == "" {
				return fmt.Errorf("--backup is required (list them with `strata ls %s`)", req.Instance)
			}
			if req.TargetDir == "" {
				return fmt.Errorf("--target-dir is required: a new or empty directory on the target host")
			}
			if !filepath.IsAbs(req.TargetDir) {
				if req.TargetDir, err = filepath.Abs(req.TargetDir); err != nil {
					return err
				}
			}
			host := req.TargetHost
			if host == "" {
				host = in.Host
			}
			var res workflows.RestoreResult
			_, err = a.start(cmd.Context(), "restore/"+host+":"+req.TargetDir, workflows.RestoreWorkflowName, req, wait, &res)
			if err != nil || !wait {
				return err
			}
			if asJS {
				return printJSON(res)
			}
			fmt.Printf("restored %s of %s into %s on %s in %.1fs\n", res.BackupID, res.Instance, res.Stats.TargetDir, res.TargetHost, res.Seconds)
			fmt.Printf("  download %.1fs (%s)  prepare %.1fs  move-back %.1fs\n", res.Stats.FetchSeconds, human(res.Stats.DownloadedBytes),
				res.Stats.PrepareSeconds, res.Stats.MoveBackSeconds)
			fmt.Printf("  consistent point %s:%d  gtid %s\n", res.Backup.BinlogFile, res.Backup.BinlogPos, res.Backup.GTIDSet)
			if res.Server != nil {
				fmt.Printf("  server %s running: pid %d, port %d, socket %s (started in %.1fs)\n", res.Server.ServerVersion,
					res.Server.PID, res.Server.Port, res.Server.Socket, res.Server.StartSeconds)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.BackupID, "backup", "", "backup id to restore")
	f.StringVar(&req.TargetDir, "target-dir", "", "new or empty datadir to restore into")
	f.StringVar(&req.TargetHost, "target-host", "", "agent host to restore on (default: the instance's host)")
	f.BoolVar(&req.Start, "start", false, "start a server on the restored datadir and check it answers")
	f.IntVar(&req.Port, "port", 0, "port for the restored server (with --start)")
	f.BoolVar(&wait, "wait", false, "wait for the restore to finish and print its result")
	f.BoolVar(&asJS, "json", false, "print the result as JSON (with --wait)")
	return cmd
}

func lsCmd(a *app) *cobra.Command {
	var asJS bool
	cmd := &cobra.Command{
		Use:   "ls INSTANCE",
		Short: "List an instance's backups from the repository (no Temporal needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.load(); err != nil {
				return err
			}
			if _, err := a.cfg.Instance(args[0]); err != nil {
				return err
			}
			r, err := workers.OpenRepo(cmd.Context(), a.cfg)
			if err != nil {
				return err
			}
			ms, err := r.ListBackups(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			sums := make([]*activities.BackupSummary, 0, len(ms))
			for _, m := range ms {
				sums = append(sums, activities.Summarize(m))
			}
			if asJS {
				return printJSON(sums)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "BACKUP ID\tTYPE\tSTARTED (UTC)\tDURATION\tRAW\tSTORED\tBINLOG POSITION\tGTID\tLSN")
			for _, s := range sums {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\t%s\t%s\t%s:%d\t%s\t%d-%d\n", s.BackupID, s.Type, s.StartTime.Format("2006-01-02 15:04:05"),
					s.DurationSeconds, human(s.RawSize), human(s.StoredSize), s.BinlogFile, s.BinlogPos, s.GTIDSet, s.FromLSN, s.ToLSN)
			}
			if len(sums) == 0 {
				fmt.Fprintf(tw, "(no backups of %s in %s)\n", args[0], r.Backend().String())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJS, "json", false, "print as JSON")
	return cmd
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ratio(raw, stored int64) float64 {
	if stored == 0 {
		return 0
	}
	return float64(raw) / float64(stored)
}
