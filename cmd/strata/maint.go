package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-backup/strata/internal/retention"
	"github.com/strata-backup/strata/internal/verify"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

func verifyCmd(a *app) *cobra.Command {
	var (
		id                            string
		local, asJS, archive, allowUn bool
	)
	cmd := &cobra.Command{
		Use:   "verify INSTANCE [--backup ID] [--archive]",
		Short: "Read back every chunk and check sizes, sha256s, parents and LSN continuity (VerifyWorkflow)",
		Long: "Verify checks one backup and every backup on its chain, or all backups of the instance.\n" +
			"It exits non-zero when any problem is found. --local runs it in this process without Temporal.\n" +
			"--archive also reads back every archived binlog segment behind every recovery window (with --local and\n" +
			"the config's encryption keys, encrypted segments are decrypted and their index records authenticated).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rep verify.Report
			if local {
				r, err := a.openRepoFor(cmd, args[0])
				if err != nil {
					return err
				}
				in, _ := a.cfg.Instance(args[0])
				var ids []string
				if id != "" {
					ids = []string{id}
				}
				// With the config's keys, manifests are authenticated too.
				opts := []verify.Option{verify.RequireEncrypted(in.EncryptionEnabled(), allowUn)}
				if a.cfg.Encryption.Configured() {
					ring, err := workers.LoadKeyring(a.cfg)
					if err != nil {
						return err
					}
					opts = append(opts, verify.WithKeys(ring))
				}
				got, err := verify.Backups(cmd.Context(), r, args[0], ids, in.Backup.Parallelism, nil, opts...)
				if err != nil {
					return err
				}
				if archive {
					ring, err := workers.LoadKeyring(a.cfg)
					if err != nil {
						return err
					}
					opt := verify.ArchiveOptions{Keys: ring, Encrypted: in.EncryptionEnabled(), AllowUnencrypted: allowUn}
					if err := verify.Archive(cmd.Context(), r, args[0], opt, got); err != nil {
						return err
					}
				}
				rep = *got
			} else {
				in, err := a.loadFor(args[0])
				if err != nil {
					return err
				}
				var res workflows.VerifyResult
				wid := workflows.VerifyWorkflowID(args[0], time.Now())
				if _, err := a.start(cmd.Context(), wid, workflows.VerifyWorkflowName,
					workflows.VerifyRequest{Instance: args[0], BackupID: id, Archive: archive, AllowUnencrypted: allowUn}, true, &res,
					workflows.SearchAttributes(args[0], workflows.KindVerify, id, in.Host)); err != nil {
					return err
				}
				rep = res.Report
			}
			if asJS {
				if err := printJSON(rep); err != nil {
					return err
				}
			} else {
				fmt.Printf("verified %d backups of %s: %d chunks, %s\n", len(rep.Checked), args[0], rep.Chunks, human(rep.Bytes))
				if archive {
					fmt.Printf("verified the binlog archive of %s: %d recovery windows, %d segments, %s\n", args[0], rep.Windows, rep.Segments, human(rep.SegmentBytes))
				}
				for _, p := range rep.Problems {
					fmt.Printf("  PROBLEM  %s\n", p)
				}
			}
			if !rep.OK() {
				return fmt.Errorf("%d problems found in the backups of %s", len(rep.Problems), args[0])
			}
			if !asJS {
				fmt.Println("all backups intact")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "backup", "", "verify this backup and its chain (default: all)")
	cmd.Flags().BoolVar(&local, "local", false, "verify in this process, without Temporal")
	cmd.Flags().BoolVar(&archive, "archive", false, "also read back every archived binlog segment behind every recovery window")
	cmd.Flags().BoolVar(&allowUn, "allow-unencrypted", false, "with --archive on an instance with encryption enabled: accept old unencrypted or unauthenticated segments")
	cmd.Flags().BoolVar(&asJS, "json", false, "print the report as JSON")
	return cmd
}

func pruneCmd(a *app) *cobra.Command {
	var dryRun, asJS, allowNewest bool
	cmd := &cobra.Command{
		Use:   "prune INSTANCE [--dry-run]",
		Short: "Apply the retention policy: delete expired backups, abandoned partial uploads and unneeded binlog archive (RetentionWorkflow)",
		Long: "Prune deletes the backups the instance's retention policy does not keep (never one a kept\n" +
			"backup depends on), abandoned partial uploads, and the archived binlogs that no kept backup's\n" +
			"recovery window needs. The newest restorable backup and its chain are always kept, whatever\n" +
			"the policy, unless --allow-delete-newest is given. --dry-run shows all of it and deletes nothing.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.loadFor(args[0])
			if err != nil {
				return err
			}
			var res workflows.RetentionResult
			wid := workflows.RetentionWorkflowID(args[0])
			if _, err := a.start(cmd.Context(), wid, workflows.RetentionWorkflowName,
				workflows.RetentionRequest{Instance: args[0], DryRun: dryRun, AllowDeleteNewest: allowNewest}, true, &res,
				workflows.SearchAttributes(args[0], workflows.KindRetention, "", in.Host)); err != nil {
				return err
			}
			if asJS {
				return printJSON(res)
			}
			verb := "deleted"
			if dryRun {
				verb = "would delete"
			}
			fmt.Printf("retention of %s (%s):\n", args[0], res.Plan.Policy)
			for _, k := range res.Plan.Plan.Keep {
				fmt.Printf("  keep    %-24s %-12s %s\n", k.BackupID, k.Type, k.Reason)
			}
			for _, d := range res.Result.Deleted {
				fmt.Printf("  %-7s %-24s %-12s %s\n", "delete", d.BackupID, d.Type, d.Reason)
			}
			for _, p := range res.Result.PartialRemoved {
				fmt.Printf("  %s partial upload %s\n", verb, p)
			}
			if ar := res.Result.Archive; ar != nil {
				printArchivePrune(verb, ar)
			}
			fmt.Printf("%s %d backups and %d partial uploads; kept %d\n", verb, len(res.Result.Deleted), len(res.Result.PartialRemoved), len(res.Plan.Plan.Keep))
			if res.Plan.Plan.NewestDeleted {
				fmt.Printf("WARNING: %s the newest restorable chain (backup %s, --allow-delete-newest): no backup of %s is left to restore\n",
					verb, res.Plan.Plan.Newest, args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&allowNewest, "allow-delete-newest", false, "let the policy delete the newest restorable backup and its chain (kept otherwise)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be deleted; delete nothing")
	cmd.Flags().BoolVar(&asJS, "json", false, "print the result as JSON")
	return cmd
}

// printArchivePrune prints what a prune did (or would do) to the binlog
// archive.
func printArchivePrune(verb string, ar *retention.ArchiveSummary) {
	if ar.Segments > 0 {
		fmt.Printf("  %s binlog archive: %d segments (%s), %s to %s (%s to %s)\n", verb, ar.Segments, human(ar.StoredBytes),
			ar.From, ar.To, ar.FromTime.Format(time.RFC3339), ar.ToTime.Format(time.RFC3339))
	}
	if ar.Gaps > 0 {
		fmt.Printf("  %s binlog archive: %d gap records before the first kept segment\n", verb, ar.Gaps)
	}
	for _, k := range ar.KeyRefs {
		fmt.Printf("  %s binlog archive: data key %s (no kept segment uses it)\n", verb, k)
	}
	if ar.Packs > 0 {
		fmt.Printf("  %s binlog archive: %d packs (compacted data objects of the pruned segments)\n", verb, ar.Packs)
	}
	if extra := ar.DataObjects - ar.Segments; extra > 0 && ar.Packs == 0 {
		fmt.Printf("  %s binlog archive: %d unreferenced data objects\n", verb, extra)
	}
	fmt.Printf("  binlog archive: %s\n", ar.Reason)
}
