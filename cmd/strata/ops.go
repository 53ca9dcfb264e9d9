package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// start starts a workflow on the strata task queue and, with wait, follows
// it to the end and decodes its result. A workflow with the same id that is
// still running is an error, never silently joined; a backup id, once used
// by any run, is never used again. sa are the workflow's search attributes
// (workflows.SearchAttributes): every workflow carries them.
func (a *app) start(ctx context.Context, id, wfType string, input any, wait bool, result any, sa temporal.SearchAttributes) (client.WorkflowRun, error) {
	c, err := workers.Dial(a.cfg, a.log)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	reuse := enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	if wfType == workflows.BackupWorkflowName {
		reuse = enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                a.cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy:                    reuse,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    sa,
	}, wfType, input)
	if err != nil {
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &already) {
			return nil, fmt.Errorf("workflow %s already exists (running, or a backup id that was used before): choose another id, or follow it with `temporal workflow show --workflow-id %s`: %w", id, id, err)
		}
		return nil, fmt.Errorf("start %s %s: %w", wfType, id, err)
	}
	fmt.Fprintf(os.Stderr, "started %s  workflow id %s  run id %s\n", wfType, run.GetID(), run.GetRunID())
	if !wait {
		fmt.Fprintf(os.Stderr, "follow it with: temporal workflow show --workflow-id %s --namespace %s\n", run.GetID(), a.cfg.Temporal.Namespace)
		return run, nil
	}
	// Show the running activity's progress on stderr (stdout carries the
	// result, --json included): a live bar on a terminal, plain lines
	// otherwise.
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		newFollower(os.Stderr, a.expectBytes).run(fctx, c, run.GetID(), run.GetRunID())
	}()
	err = run.Get(ctx, result)
	stop()
	<-done
	return run, err
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func backupCmd(a *app) *cobra.Command {
	var (
		id, typ, reason                   string
		wait, asJS, autoFull, viaInstance bool
	)
	cmd := &cobra.Command{
		Use:   "backup INSTANCE",
		Short: "Take a hot physical backup of an instance (BackupWorkflow)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.loadFor(args[0])
			if err != nil {
				return err
			}
			if wait {
				a.expectBytes = expectedBackupBytes(cmd.Context(), a, args[0], typ)
			}
			var res workflows.BackupResult
			if viaInstance {
				_, err := a.requestBackup(cmd.Context(), args[0], workflows.BackupAsk{
					Type: typ, AutoFull: autoFull, BackupID: id, RequestedBy: "strata backup", Reason: reason,
				}, wait, &res)
				if err != nil || !wait {
					return err
				}
			} else {
				if id == "" {
					id = time.Now().UTC().Format(workflows.BackupIDFormat)
				}
				_, err := a.start(cmd.Context(), workflows.BackupWorkflowID(args[0], id), workflows.BackupWorkflowName,
					workflows.BackupRequest{Instance: args[0], BackupID: id, Type: typ, AutoFull: autoFull}, wait, &res,
					workflows.SearchAttributes(args[0], workflows.KindBackup, id, in.Host))
				if err != nil || !wait {
					return err
				}
			}
			if asJS {
				return printJSON(res)
			}
			fmt.Printf("backup %s of %s complete (%s)\n", res.BackupID, res.Instance, res.Type)
			if res.Note != "" {
				fmt.Printf("  note        %s\n", res.Note)
			}
			if res.ParentID != "" {
				fmt.Printf("  parent      %s (chain of %d, LSN %d-%d)\n", res.ParentID, res.ChainLength, res.FromLSN, res.ToLSN)
			}
			fmt.Printf("  size        %s raw, %s stored (%.2fx) in %d chunks, %s\n", human(res.RawSize), human(res.StoredSize),
				ratio(res.RawSize, res.StoredSize), res.Chunks, res.Compression)
			fmt.Printf("  uploaded    %s (%s reused from an interrupted attempt)\n", human(res.UploadedBytes), human(res.ReusedBytes))
			if res.Encrypted {
				fmt.Printf("  encrypted   data key wrapped by %s\n", res.EncryptionKeyID)
			}
			fmt.Printf("  time        %.1fs, %.1f MB/s; commits blocked %.3fs, DDL blocked %.3fs\n", res.DurationSeconds,
				res.ThroughputMBps, res.CommitsBlockedSeconds, res.DDLBlockedSeconds)
			fmt.Printf("  consistent  %s:%d  gtid %s  lsn %d\n", res.BinlogFile, res.BinlogPos, res.GTIDSet, res.ToLSN)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "backup id (default: the UTC start time, e.g. 20261124T084500Z)")
	cmd.Flags().StringVar(&typ, "type", "full", "full, incremental (since the newest backup), differential (since the newest full) or logical (a parallel SQL dump)")
	cmd.Flags().BoolVar(&autoFull, "auto-full", false, "take a full when an incremental or differential has no base")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the backup to finish and print its result")
	cmd.Flags().BoolVar(&viaInstance, "via-instance", false, "ask the instance's entity workflow (instance/INSTANCE) by Update: queued behind, or joined to, its other backups")
	cmd.Flags().StringVar(&reason, "reason", "", "why the backup is asked for (with --via-instance: shown in the entity's status)")
	cmd.Flags().BoolVar(&asJS, "json", false, "print the result as JSON (with --wait)")
	return cmd
}

func restoreCmd(a *app) *cobra.Command {
	var (
		req                   workflows.RestoreRequest
		wait, asJS            bool
		toTime, toGTID, toPos string
		table                 tableFlags
	)
	cmd := &cobra.Command{
		Use: "restore INSTANCE (--backup ID | --to-time T | --to-gtid G | --to-position F:P) --target-dir DIR [--start --port N]\n" +
			"  strata restore INSTANCE --table SCHEMA.TABLE [--to-time T | --to-gtid G | --to-position F:P] [--backup ID] --into INSTANCE [--as SCHEMA.TABLE] [--replace]",
		Short: "Restore a backup into a new datadir (RestoreWorkflow), or one table of it into a live server (TableRestoreWorkflow)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Instance = args[0]
			in, err := a.loadFor(req.Instance)
			if err != nil {
				return err
			}
			if req.Target, err = parseTarget(toTime, toGTID, toPos); err != nil {
				return err
			}
			if table.table != "" {
				if req.TargetDir != "" || req.Start || req.TargetHost != "" {
					return fmt.Errorf("--table restores into a live server (--into): --target-dir, --target-host and --start are for whole restores")
				}
				if len(req.Include)+len(req.Exclude)+len(req.Rename) > 0 || req.Users || req.Binlog {
					return fmt.Errorf("--include, --exclude, --rename, --users and --binlog are for loading logical backups; --table restores one table of a physical backup (name it with --as)")
				}
				return a.restoreTable(cmd, req, table, wait, asJS)
			}
			if table.as != "" || table.id != "" {
				return fmt.Errorf("--as and --id go with --table")
			}
			if req.BackupID == "" && req.Target.IsZero() {
				return fmt.Errorf("--backup or a --to-time/--to-gtid/--to-position target is required (list backups with `strata ls %s`)", req.Instance)
			}
			if req.Into != "" {
				return a.loadInto(cmd, req, wait, asJS)
			}
			if req.TargetDir == "" {
				return fmt.Errorf("--target-dir is required: a new or empty directory on the target host")
			}
			if !filepath.IsAbs(req.TargetDir) {
				if req.TargetDir, err = filepath.Abs(req.TargetDir); err != nil {
					return err
				}
			}
			req.TargetDir = filepath.Clean(req.TargetDir)
			host := req.TargetHost
			if host == "" {
				host = in.Host
			}
			if wait {
				a.expectBytes = expectedRestoreBytes(cmd.Context(), a, req.Instance, req.BackupID)
			}
			var res workflows.RestoreResult
			_, err = a.start(cmd.Context(), restoreWorkflowID(host, req.TargetDir), workflows.RestoreWorkflowName, req, wait, &res,
				workflows.SearchAttributes(req.Instance, workflows.KindRestore, req.BackupID, host))
			if err != nil || !wait {
				return err
			}
			if asJS {
				return printJSON(res)
			}
			fmt.Printf("restored %s of %s into %s on %s in %.1fs\n", res.BackupID, res.Instance, res.Stats.TargetDir, res.TargetHost, res.Seconds)
			fmt.Printf("  chain    %s\n", strings.Join(res.Chain, " -> "))
			if res.Backup.Type == manifest.TypeLogical {
				fmt.Printf("  load     %.1fs: %d rows from %d files (%s stored) into a new datadir  move-back %.1fs\n",
					res.Stats.FetchSeconds, res.Stats.Rows, res.Stats.Files, human(res.Stats.DownloadedBytes), res.Stats.MoveBackSeconds)
			} else {
				fmt.Printf("  download %.1fs (%s, %s from the local cache of an interrupted attempt)  prepare %.1fs  move-back %.1fs\n",
					res.Stats.FetchSeconds, human(res.Stats.DownloadedBytes), human(res.Stats.CachedBytes),
					res.Stats.PrepareSeconds, res.Stats.MoveBackSeconds)
			}
			fmt.Printf("  consistent point %s:%d  gtid %s\n", res.Backup.BinlogFile, res.Backup.BinlogPos, res.Backup.GTIDSet)
			if res.Replay != nil {
				fmt.Printf("  replayed %d transactions (%s) to %s in %.1fs, last GTID %s at %s\n", res.Replay.Transactions,
					human(res.Replay.Bytes), req.Target, res.Replay.Seconds, res.Replay.LastGTID, res.Replay.LastTime.Format(time.RFC3339))
			}
			for _, n := range res.Notes {
				fmt.Printf("  note     %s\n", n)
			}
			if res.Server != nil {
				fmt.Printf("  server %s running: pid %d, port %d, socket %s (started in %.1fs)\n", res.Server.ServerVersion,
					res.Server.PID, res.Server.Port, res.Server.Socket, res.Server.StartSeconds)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.BackupID, "backup", "", "backup id to restore (with a target: the base backup; default the newest before it)")
	f.StringVar(&toTime, "to-time", "", "point-in-time restore to this time (RFC 3339; one-second binlog resolution)")
	f.StringVar(&toGTID, "to-gtid", "", "point-in-time restore up to and including this GTID")
	f.StringVar(&toPos, "to-position", "", "point-in-time restore up to FILE:POSITION of the source's binlog")
	f.StringVar(&req.TargetDir, "target-dir", "", "new or empty datadir to restore into")
	f.StringVar(&req.TargetHost, "target-host", "", "agent host to restore on (default: the instance's host)")
	f.BoolVar(&req.Start, "start", false, "start a server on the restored datadir and check it answers")
	f.IntVar(&req.Port, "port", 0, "port for the restored server (with --start)")
	f.BoolVar(&req.AllowUnencrypted, "allow-unencrypted", false,
		"for an instance with encryption enabled, also accept old data stored unencrypted or without a MAC (backups and archived binlog segments)")
	f.BoolVar(&req.AllowFailedDrill, "allow-failed-drill", false, "restore a backup whose last restore drill failed (refused without it)")
	f.StringArrayVar(&req.Include, "include", nil, "logical backups: load only tables matching schema.table (* and ? within a name; repeatable)")
	f.StringArrayVar(&req.Exclude, "exclude", nil, "logical backups: skip tables matching schema.table (repeatable)")
	f.StringArrayVar(&req.Rename, "rename", nil, "logical backups: load table a.b as c.d (--rename shop.orders=shop.orders_restored; repeatable)")
	f.StringVar(&req.Into, "into", "", "logical backups, and --table: load into the running server of this instance instead of a new datadir")
	f.BoolVar(&req.Replace, "replace", false, "with --into: drop existing tables of the same name first (without it an existing table fails the load before anything changes); "+
		"with --table: replace the table of that name, swapped in once the restored copy is verified")
	f.BoolVar(&req.Users, "users", false, "with --into: load the accounts and grants too (existing accounts are kept)")
	f.BoolVar(&req.Binlog, "binlog", false, "with --into: write the load to the server's binary log, for its replicas")
	f.StringVar(&table.table, "table", "", "physical backups: restore only this table (SCHEMA.TABLE; backticks quote a part holding a dot) into the running server --into (default: INSTANCE)")
	f.StringVar(&table.as, "as", "", "with --table: the table's name on the live server (default: its own)")
	f.StringVar(&table.id, "id", "", "with --table: the restore's id (default: now, e.g. 20261124T084500Z)")
	f.BoolVar(&wait, "wait", false, "wait for the restore to finish and print its result")
	f.BoolVar(&asJS, "json", false, "print the result as JSON (with --wait)")
	return cmd
}

// loadInto starts the RestoreWorkflow that loads a logical backup into a
// running server, and prints its result.
func (a *app) loadInto(cmd *cobra.Command, req workflows.RestoreRequest, wait, asJS bool) error {
	if req.BackupID == "" || !req.Target.IsZero() || req.TargetDir != "" || req.Start {
		return fmt.Errorf("--into loads a logical backup (--backup ID) into a running server: no --target-dir, --start or --to-* target (for a point in time, restore the logical backup into a new datadir with --target-dir and a --to-* target)")
	}
	into, err := a.loadFor(req.Into)
	if err != nil {
		return err
	}
	var res workflows.RestoreResult
	_, err = a.start(cmd.Context(), workflows.LoadWorkflowID(req.Into, req.BackupID), workflows.RestoreWorkflowName, req, wait, &res,
		workflows.SearchAttributes(req.Instance, workflows.KindRestore, req.BackupID, into.Host))
	if err != nil || !wait {
		return err
	}
	if asJS {
		return printJSON(res)
	}
	l := res.Load
	fmt.Printf("loaded %s of %s into %s on %s in %.1fs\n", res.BackupID, res.Instance, l.Into, res.TargetHost, res.Seconds)
	fmt.Printf("  tables   %d, %d rows from %d files (%d already loaded by an interrupted attempt)\n", l.Tables, l.Rows, l.Files, l.SkippedFiles)
	fmt.Printf("  consistent point %s:%d  gtid %s\n", res.Backup.BinlogFile, res.Backup.BinlogPos, res.Backup.GTIDSet)
	for _, n := range l.Notes {
		fmt.Printf("  note     %s\n", n)
	}
	return nil
}

// restoreWorkflowID is the id of the restore into dir on host: one per
// target, however the directory is spelled.
func restoreWorkflowID(host, dir string) string {
	return workflows.RestoreWorkflowID(host, dir)
}

// catalogEntry is one row of `strata ls`.
type catalogEntry struct {
	activities.BackupSummary
	Chain  []string `json:"chain,omitempty"`
	Status string   `json:"status"`
}

// catalog reads every backup of an instance with its chain and status, and
// the abandoned partial uploads.
func catalog(ctx context.Context, r *repo.Repo, instance string) ([]catalogEntry, []string, error) {
	ms, err := r.ListBackups(ctx, instance)
	if err != nil {
		return nil, nil, err
	}
	failed, err := drill.FailedBackups(ctx, r.Backend(), instance)
	if err != nil {
		return nil, nil, err
	}
	out := make([]catalogEntry, 0, len(ms))
	for _, m := range ms {
		e := catalogEntry{BackupSummary: *activities.Summarize(m), Status: "ok"}
		chain, err := repo.Chain(ms, m.BackupID)
		if err != nil {
			e.Status = "broken: " + err.Error()
		}
		if f := failed[m.BackupID]; f != nil {
			e.FailedDrill = f.DrillID
			e.Status = "FAILED DRILL " + f.DrillID + " (" + f.FailedPhase + "): not restored without --allow-failed-drill"
		}
		for _, c := range chain {
			e.Chain = append(e.Chain, c.BackupID)
		}
		out = append(out, e)
	}
	partial, err := r.ListPartial(ctx, instance)
	return out, partial, err
}

func lsCmd(a *app) *cobra.Command {
	var asJS bool
	cmd := &cobra.Command{
		Use:   "ls INSTANCE",
		Short: "List an instance's backups from the repository (no Temporal needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.openRepoFor(cmd, args[0])
			if err != nil {
				return err
			}
			entries, partial, err := catalog(cmd.Context(), r, args[0])
			if err != nil {
				return err
			}
			if asJS {
				var ar archiveReport
				if err := ar.fromRepo(cmd.Context(), r, args[0]); err != nil {
					return err
				}
				return printJSON(struct {
					Backups []catalogEntry  `json:"backups"`
					Partial []string        `json:"partial_uploads"`
					Windows []binlog.Window `json:"pitr_windows"`
					Gaps    []binlog.Gap    `json:"gaps"`
				}{entries, partial, ar.Windows, ar.Gaps})
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "BACKUP ID\tTYPE\tPARENT\tCHAIN\tSTARTED (UTC)\tENDED\tDURATION\tRAW\tSTORED\tBINLOG POSITION\tGTID\tLSN\tSTATUS")
			for _, e := range entries {
				parent := e.ParentID
				if parent == "" {
					parent = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%.1fs\t%s\t%s\t%s:%d\t%s\t%d-%d\t%s\n", e.BackupID, e.Type, parent, len(e.Chain),
					e.StartTime.Format("2006-01-02 15:04:05"), e.EndTime.Format("15:04:05"), e.DurationSeconds, human(e.RawSize), human(e.StoredSize),
					e.BinlogFile, e.BinlogPos, e.GTIDSet, e.FromLSN, e.ToLSN, e.Status)
			}
			for _, id := range partial {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tpartial upload (no manifest; removed by prune)\n", id)
			}
			if len(entries)+len(partial) == 0 {
				fmt.Fprintf(tw, "(no backups of %s in %s)\n", args[0], r.String())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return printWindows(cmd.Context(), r, args[0])
		},
	}
	cmd.Flags().BoolVar(&asJS, "json", false, "print as JSON")
	return cmd
}

func infoCmd(a *app) *cobra.Command {
	var asJS bool
	cmd := &cobra.Command{
		Use:   "info INSTANCE BACKUP_ID",
		Short: "Show one backup's manifest (no Temporal needed)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.openRepoFor(cmd, args[0])
			if err != nil {
				return err
			}
			m, err := r.ReadManifest(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if asJS {
				return printJSON(m)
			}
			all, err := r.ListBackups(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			chain, cerr := repo.Chain(all, m.BackupID)
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			row := func(k string, format string, v ...any) {
				fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, v...)...)
			}
			row("backup", "%s", m.BackupID)
			row("instance", "%s", m.Instance)
			row("type", "%s", m.Type)
			if m.ParentID != "" {
				row("parent", "%s", m.ParentID)
			}
			if cerr != nil {
				row("chain", "BROKEN: %v", cerr)
			} else {
				ids := make([]string, len(chain))
				for i, c := range chain {
					ids[i] = c.BackupID
				}
				row("chain", "%s", strings.Join(ids, " -> "))
			}
			row("tool", "%s %s", m.Tool, m.ToolVersion)
			if f, err := m.Flavor(); err != nil {
				row("server", "UNKNOWN FLAVOR: %v", err)
			} else {
				row("server", "%s", f)
			}
			row("started", "%s", m.StartTime.Format(time.RFC3339))
			row("ended", "%s (%.1fs)", m.EndTime.Format(time.RFC3339), m.Duration.Std().Seconds())
			row("consistent at", "%s", m.ConsistentAt.Format(time.RFC3339Nano))
			row("binlog", "%s:%d", m.BinlogFile, m.BinlogPos)
			row("gtid", "%s", m.GTIDSet)
			row("lsn", "%d-%d (last %d)", m.FromLSN, m.ToLSN, m.LastLSN)
			row("commits blocked", "%.3fs", m.LockDuration.Std().Seconds())
			row("ddl blocked", "%.3fs", m.DDLLockDuration.Std().Seconds())
			row("size", "%s raw, %s stored (%.2fx)", human(m.RawSize), human(m.StoredSize), ratio(m.RawSize, m.StoredSize))
			row("compression", "%s level %d, chunks of %s", m.Compression, m.CompressionLevel, human(m.ChunkSize))
			if m.Encrypted {
				var ids []string
				if objs, err := r.BackupKeys(m.Instance, m.BackupID).List(cmd.Context()); err == nil {
					for _, o := range objs {
						ids = append(ids, o.KEKID)
					}
				}
				row("encryption", "AES-256-GCM, data key wrapped by %s at backup; now by %s", m.EncryptionKeyID, strings.Join(ids, ", "))
			} else {
				row("encryption", "none")
			}
			if m.ReusedBytes > 0 {
				row("resumed", "%s uploaded, %s reused from an interrupted attempt", human(m.UploadedBytes), human(m.ReusedBytes))
			}
			row("chunks", "%d", len(m.Chunks))
			row("stream sha256", "%s", m.RawSHA256)
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJS, "json", false, "print the manifest as JSON")
	return cmd
}

// openRepoFor loads the config, checks the instance and opens the repository.
func (a *app) openRepoFor(cmd *cobra.Command, instance string) (*repo.Repo, error) {
	if _, err := a.loadFor(instance); err != nil {
		return nil, err
	}
	return workers.OpenRepo(cmd.Context(), a.cfg)
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

// requestBackup asks instance's entity workflow for a backup (Update, with
// start) and prints the answer; with wait it waits for the backup's result.
func (a *app) requestBackup(ctx context.Context, instance string, ask workflows.BackupAsk, wait bool, res *workflows.BackupResult) (workflows.BackupAccepted, error) {
	c, err := workers.Dial(a.cfg, a.log)
	if err != nil {
		return workflows.BackupAccepted{}, err
	}
	defer c.Close()
	acc, err := workers.RequestBackup(ctx, c, a.cfg.Temporal.TaskQueue, instance, ask)
	if err != nil {
		return acc, err
	}
	how := "queued"
	switch {
	case acc.Joined:
		how = "joined to a backup already asked for"
	case acc.Position == 0:
		how = "starting now"
	}
	fmt.Fprintf(os.Stderr, "accepted by %s: backup %s (%s, position %d)  workflow id %s\n",
		workflows.InstanceWorkflowID(instance), acc.BackupID, how, acc.Position, acc.WorkflowID)
	if !wait {
		fmt.Fprintf(os.Stderr, "follow it with: temporal workflow show --workflow-id %s --namespace %s\n", acc.WorkflowID, a.cfg.Temporal.Namespace)
		return acc, nil
	}
	// The progress of the backup once the entity has started it.
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		newFollower(os.Stderr, a.expectBytes).run(fctx, c, acc.WorkflowID, "")
	}()
	err = workers.WaitBackup(ctx, c, acc, 2*time.Second, res)
	stop()
	<-done
	return acc, err
}
