package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/workers"
)

func keyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Encryption keys: show the configured key's id, rotate key encryption keys"}
	var idJS bool
	id := &cobra.Command{
		Use:   "id",
		Short: "Print the id of the configured key encryption key (and of the old keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ring, err := a.keyring()
			if err != nil {
				return err
			}
			if idJS {
				return printJSON(struct {
					Current string   `json:"current"`
					Old     []string `json:"old"`
				}{ring.Current().ID(), append([]string{}, ring.IDs()[1:]...)})
			}
			fmt.Println(ring.Current().ID())
			for _, id := range ring.IDs()[1:] {
				fmt.Printf("%s (old)\n", id)
			}
			return nil
		},
	}
	id.Flags().BoolVar(&idJS, "json", false, "print as JSON")
	var removeOld, dryRun, rotJS bool
	rotate := &cobra.Command{
		Use:   "rotate [INSTANCE...]",
		Short: "Wrap every backup's and binlog archive's data key with the current key encryption key (no Temporal needed)",
		Long: "After encryption.key_file (or key_env) names a new key and the previous one is listed in\n" +
			"encryption.old_key_files (or old_key_envs), rotate adds to every encrypted backup and binlog\n" +
			"archive run of the instances (default: every instance of the config or of the repository,\n" +
			"including instances no longer configured) a wrapping of its data key by the new key. Backup\n" +
			"data is not rewritten. With --remove-old, the wrappings by other keys are then deleted, after\n" +
			"which the old key is no longer needed to restore. It reads and writes the repository directly;\n" +
			"run it after the agents have the new key, so that no backup is still being taken with the old one.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, err := a.keyring()
			if err != nil {
				return err
			}
			r, err := workers.OpenRepo(cmd.Context(), a.cfg)
			if err != nil {
				return err
			}
			var configured []string
			for _, in := range a.cfg.Instances {
				configured = append(configured, in.ID)
			}
			instances, err := rotationInstances(cmd.Context(), r, configured, args)
			if err != nil {
				return err
			}
			prefix := ""
			if dryRun {
				prefix = "(dry run) "
			}
			cur := ring.Current().ID()
			var rewrapped, current, removed, failed int
			var rows []rotationRow
			say := func(format string, v ...any) {
				if !rotJS {
					fmt.Printf(format, v...)
				}
			}
			for _, inst := range instances {
				sets, err := r.EncryptedKeySets(cmd.Context(), inst)
				if err != nil {
					return err
				}
				for _, ks := range sets {
					rot, err := repo.RotateKeySet(cmd.Context(), ks, ring, removeOld, dryRun)
					if err != nil {
						failed++
						rows = append(rows, rotationRow{What: ks.What, Error: err.Error()})
						say("%sFAILED  %s: %v\n", prefix, ks.What, err)
						continue
					}
					var did []string
					if rot.Added != "" {
						rewrapped++
						did = append(did, fmt.Sprintf("wrapped by %s (unwrapped with %s)", rot.Added, rot.From))
					} else {
						current++
						did = append(did, "already wrapped by "+cur)
					}
					if len(rot.Removed) > 0 {
						removed += len(rot.Removed)
						did = append(did, "removed the wrapping by "+strings.Join(rot.Removed, ", "))
					}
					rows = append(rows, rotationRow{What: rot.What, Added: rot.Added, From: rot.From, Removed: rot.Removed})
					say("%s%s: %s\n", prefix, rot.What, strings.Join(did, "; "))
				}
			}
			verb := "rotated"
			if dryRun {
				verb = "would rotate"
			}
			say("%s %d data keys to %s, %d already current, %d old wrappings removed, %d failed\n", verb, rewrapped, cur, current, removed, failed)
			if rotJS {
				if err := printJSON(struct {
					DryRun  bool          `json:"dry_run"`
					Current string        `json:"current"`
					Keys    []rotationRow `json:"keys"`
				}{dryRun, cur, rows}); err != nil {
					return err
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d data keys could not be rotated: configure the key encryption keys they name in encryption.old_key_files or old_key_envs and run again", failed)
			}
			return nil
		},
	}
	rotate.Flags().BoolVar(&removeOld, "remove-old", false, "delete the wrappings by other keys once the current key's is stored and checked")
	rotate.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be done; change nothing")
	rotate.Flags().BoolVar(&rotJS, "json", false, "print the data keys and what was done to each as JSON")
	cmd.AddCommand(id, rotate)
	return cmd
}

// rotationRow is one data key of `key rotate --json`.
type rotationRow struct {
	What    string   `json:"what"`
	Added   string   `json:"added,omitempty"` // the key now wrapping it
	From    string   `json:"from,omitempty"`  // the key that unwrapped it
	Removed []string `json:"removed,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// rotationInstances returns the instances whose keys `key rotate` rotates:
// those named (each configured or present in the repository), or else every
// configured instance and every instance with data in the repository, so
// that the backups of an instance removed from the config are rotated too.
func rotationInstances(ctx context.Context, r *repo.Repo, configured, named []string) ([]string, error) {
	stored, err := r.Instances(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	var all []string
	for _, id := range append(slices.Clone(configured), stored...) {
		if !known[id] {
			known[id] = true
			all = append(all, id)
		}
	}
	if len(named) == 0 {
		sort.Strings(all)
		return all, nil
	}
	for _, id := range named {
		if !known[id] {
			return nil, fmt.Errorf("instance %q is neither in the config nor in the repository %s (instances: %s)", id, r, strings.Join(all, ", "))
		}
	}
	return named, nil
}

// keyring loads the config and its encryption keys, which must be set.
func (a *app) keyring() (*crypt.Keyring, error) {
	if err := a.load(); err != nil {
		return nil, err
	}
	ring, err := workers.LoadKeyring(a.cfg)
	if err != nil {
		return nil, err
	}
	if ring == nil {
		return nil, fmt.Errorf("no encryption key configured in %s: set encryption.key_file or encryption.key_env", a.cfg.Path)
	}
	return ring, nil
}
