package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/workers"
)

func workerCmd(a *app) *cobra.Command {
	var metricsListen string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the Strata worker: every workflow and the repository activities (task queue strata)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a.jsonDefault = true
			if err := a.load(); err != nil {
				return err
			}
			r, err := workers.OpenRepo(cmd.Context(), a.cfg)
			if err != nil {
				return err
			}
			stopTracing, err := a.startTracing(cmd, "strata-worker")
			if err != nil {
				return err
			}
			defer stopTracing()
			c, err := workers.Dial(a.cfg, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			policy := config.NewWatcher(a.cfg, 0, a.log)
			w := workers.NewPolicyWorker(c, policy, r, a.log)
			go policy.Run(cmd.Context())
			if metricsListen == "" {
				metricsListen = a.cfg.Metrics.Listen
			}
			stopMetrics, err := startMetrics(metricsListen, a.log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			if metricsListen != "" {
				go workers.RunMetrics(cmd.Context(), c, policy, r, a.log)
			}
			a.log.Info("worker running", zap.String("task_queue", a.cfg.Temporal.TaskQueue),
				zap.String("temporal", a.cfg.Temporal.Address), zap.String("repository", r.Backend().String()),
				zap.String("watching", a.cfg.Path))
			return w.Run(stopOn(cmd))
		},
	}
	metricsListenFlag(cmd, &metricsListen, "metrics.listen")
	return cmd
}

func agentCmd(a *app) *cobra.Command {
	var host, metricsListen string
	cmd := &cobra.Command{
		Use:   "agent --host NAME",
		Short: "Run the agent of one database host (task queue strata-agent.NAME)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a.jsonDefault = true
			if err := a.load(); err != nil {
				return err
			}
			if host == "" {
				return fmt.Errorf("--host is required: the name instances[].host uses for this machine")
			}
			owned, encrypted := 0, 0
			for _, in := range a.cfg.Instances {
				if in.Host == host {
					owned++
					if in.EncryptionEnabled() {
						encrypted++
					}
				}
			}
			// Fail before connecting anywhere when a key cannot be loaded.
			ring, err := workers.LoadKeyring(a.cfg)
			if err != nil {
				return err
			}
			r, err := workers.OpenRepo(cmd.Context(), a.cfg)
			if err != nil {
				return err
			}
			stopTracing, err := a.startTracing(cmd, "strata-agent")
			if err != nil {
				return err
			}
			defer stopTracing()
			c, err := workers.Dial(a.cfg, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			log := a.log.With(zap.String("host", host))
			// A killed agent leaves its tools' scratch dirs (with option
			// files holding passwords): remove those whose owner is gone.
			if removed, err := physical.SweepScratch(a.cfg.Agent.ScratchDir); err != nil {
				log.Warn("could not sweep scratch dirs", zap.Error(err))
			} else if len(removed) > 0 {
				log.Info("removed scratch dirs of a previous agent", zap.Strings("dirs", removed))
			}
			// And the local copies of clone backups (as big as the data).
			var cloneParents []string
			for _, in := range a.cfg.Instances {
				if in.Host != host {
					continue
				}
				if in.Backup.CloneDir != "" {
					cloneParents = append(cloneParents, in.Backup.CloneDir)
				} else if in.Datadir != "" {
					cloneParents = append(cloneParents, filepath.Dir(filepath.Clean(in.Datadir)))
				}
			}
			if removed, err := physical.SweepClones(cmd.Context(), cloneParents...); err != nil {
				log.Warn("could not sweep clone directories", zap.Error(err))
			} else if len(removed) > 0 {
				log.Info("removed clone directories of a previous agent", zap.Strings("dirs", removed))
			}
			if metricsListen == "" {
				metricsListen = a.cfg.Metrics.AgentListen
			}
			stopMetrics, err := startMetrics(metricsListen, log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			w := workers.NewAgent(c, a.cfg, host, r, log)
			policy := config.NewWatcher(a.cfg, 0, log)
			w.FollowPolicy(policy)
			go policy.Run(cmd.Context())
			fields := []zap.Field{zap.String("task_queue", config.AgentTaskQueue(host)),
				zap.String("archive_task_queue", config.ArchiveTaskQueue(host)), zap.Int("instances", owned),
				zap.Int("max_concurrent", a.cfg.Agent.MaxConcurrentHeavy)}
			if ring != nil {
				fields = append(fields, zap.String("encryption_key_id", ring.Current().ID()), zap.Strings("key_ids", ring.IDs()),
					zap.Int("encrypted_instances", encrypted))
			}
			if bw := a.cfg.Agent.BandwidthLimit; bw > 0 {
				fields = append(fields, zap.String("bandwidth_limit", bw.String()+"/s"))
			}
			log.Info("agent running", fields...)
			if owned == 0 {
				log.Warn("no instance in the config names this host; it can still receive restores")
			}
			return w.Run(stopOn(cmd))
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "this host's name, as in instances[].host")
	metricsListenFlag(cmd, &metricsListen, "metrics.agent_listen")
	return cmd
}

// stopOn returns a channel closed when the command's context ends (SIGINT/SIGTERM).
func stopOn(cmd *cobra.Command) <-chan interface{} {
	ch := make(chan interface{})
	go func() {
		<-cmd.Context().Done()
		close(ch)
	}()
	return ch
}
