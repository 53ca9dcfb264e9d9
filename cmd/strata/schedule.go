package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/schedule"
	"github.com/strata-backup/strata/workers"
)

func scheduleCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Temporal Schedules of the policy: apply, ls, pause, resume, trigger",
	}
	cmd.AddCommand(scheduleApplyCmd(a), scheduleLsCmd(a), scheduleSetCmd(a, "pause"), scheduleSetCmd(a, "resume"), scheduleSetCmd(a, "trigger"))
	return cmd
}

// withSchedules loads the config, dials Temporal and runs f with the
// schedule client.
func (a *app) withSchedules(f func(sc client.ScheduleClient) error) error {
	if err := a.load(); err != nil {
		return err
	}
	c, err := workers.Dial(a.cfg, a.log)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c.ScheduleClient())
}

func scheduleApplyCmd(a *app) *cobra.Command {
	var dry, asJS bool
	cmd := &cobra.Command{
		Use:   "apply [--dry-run]",
		Short: "Create, update and delete Strata's Temporal Schedules to match the config's policy, printing the diff",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSchedules(func(sc client.ScheduleClient) error {
				changes, err := schedule.Apply(cmd.Context(), sc, a.cfg, dry)
				if asJS {
					if jerr := printJSON(changes); jerr != nil {
						return jerr
					}
				} else {
					for _, ch := range changes {
						fmt.Println(ch)
					}
					if len(changes) == 0 {
						fmt.Println("no schedules: the policy schedules nothing and Strata has no schedule")
					}
					if dry && schedule.Changed(changes) {
						fmt.Println("(dry run: nothing changed)")
					}
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the diff, change nothing")
	cmd.Flags().BoolVar(&asJS, "json", false, "print the diff as JSON")
	return cmd
}

func scheduleLsCmd(a *app) *cobra.Command {
	var asJS bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List Strata's Temporal Schedules with their next runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSchedules(func(sc client.ScheduleClient) error {
				es, err := schedule.List(cmd.Context(), sc)
				if err != nil {
					return err
				}
				if asJS {
					if es == nil {
						es = []schedule.Entry{}
					}
					return printJSON(es)
				}
				fmt.Printf("%-32s %-7s %-40s %s\n", "SCHEDULE", "STATE", "SPEC", "NEXT")
				for _, e := range es {
					state := "active"
					if e.Paused {
						state = "paused"
					}
					next := "-"
					if len(e.Next) > 0 {
						next = e.Next[0]
					}
					fmt.Printf("%-32s %-7s %-40s %s\n", e.ID, state, e.Spec, next)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJS, "json", false, "print as JSON")
	return cmd
}

// scheduleSetCmd is pause, resume or trigger of one instance's schedule.
func scheduleSetCmd(a *app, verb string) *cobra.Command {
	var note string
	short := map[string]string{
		"pause":   "Pause a schedule (runs are not started until it is resumed)",
		"resume":  "Resume a paused schedule",
		"trigger": "Start a schedule's run now (skipped if one is running)",
	}[verb]
	cmd := &cobra.Command{
		Use:   verb + " INSTANCE KIND",
		Short: short,
		Long:  short + ". KIND is " + strings.Join(config.ScheduleKinds[:4], ", ") + ".",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withSchedules(func(sc client.ScheduleClient) error {
				ctx := cmd.Context()
				h, err := schedule.Handle(ctx, sc, args[0], args[1])
				if err != nil {
					return err
				}
				if note == "" {
					note = "strata schedule " + verb
				}
				switch verb {
				case "pause":
					err = h.Pause(ctx, client.SchedulePauseOptions{Note: note})
				case "resume":
					err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note})
				case "trigger":
					err = h.Trigger(ctx, client.ScheduleTriggerOptions{})
				}
				if err != nil {
					return fmt.Errorf("%s schedule %s: %w", verb, h.GetID(), err)
				}
				fmt.Printf("%s: %s\n", verb, h.GetID())
				return nil
			})
		},
	}
	if verb != "trigger" {
		cmd.Flags().StringVar(&note, "note", "", "note recorded on the schedule (shown by temporal schedule describe)")
	}
	return cmd
}

func policyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Validate and install a new policy (config file) for the running worker and agents",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "apply FILE",
		Short: "Validate FILE and, if valid, install it as the config file (--config), which the worker and agents reload within seconds",
		Long: "Validate FILE and, if it is valid, replace the config file (--config, $STRATA_CONFIG or ./strata.yaml) " +
			"with it atomically. The worker and the agents that read that file reload it within a few seconds: " +
			"throttle, compression, chain length and concurrency apply to work that starts afterwards, and the worker " +
			"applies the schedules again. An invalid FILE is refused, naming the key to fix, and nothing changes. " +
			"With FILE the config file itself, it is only validated.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			next, err := config.Load(args[0])
			if err != nil {
				return err
			}
			target := a.configPath
			if target == "" {
				target = os.Getenv(config.EnvConfig)
			}
			if target == "" {
				target = "strata.yaml"
			}
			if same(args[0], target) {
				fmt.Printf("%s is valid; the worker and agents watching it pick up its changes within %s\n", target, config.DefaultWatchInterval)
				return nil
			}
			if cur, err := config.Load(target); err == nil {
				for _, ch := range config.Changes(cur, next) {
					fmt.Println("  " + ch)
				}
				for _, ch := range config.RestartChanges(cur, next) {
					fmt.Println("  " + ch + ": changed; applies after a restart of the worker and agents")
				}
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			tmp := target + ".strata-new"
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				return fmt.Errorf("install policy: %w", err)
			}
			if err := os.Rename(tmp, target); err != nil {
				_ = os.Remove(tmp)
				return fmt.Errorf("install policy: %w", err)
			}
			fmt.Printf("installed %s as %s; the worker and agents reload it within %s\n", args[0], target, config.DefaultWatchInterval)
			return nil
		},
	})
	return cmd
}

func same(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(fa, fb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}
