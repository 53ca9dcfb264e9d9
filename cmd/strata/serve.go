package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/workers"
)

func workerCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run the Strata worker: every workflow and the repository activities (task queue strata)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			r, err := workers.OpenRepo(cmd.Context(), a.cfg)
			if err != nil {
				return err
			}
			c, err := workers.Dial(a.cfg, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			w := workers.NewWorker(c, a.cfg, r)
			a.log.Info("worker running", zap.String("task_queue", a.cfg.Temporal.TaskQueue),
				zap.String("temporal", a.cfg.Temporal.Address), zap.String("repository", r.Backend().String()))
			return w.Run(stopOn(cmd))
		},
	}
}

func agentCmd(a *app) *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "agent --host NAME",
		Short: "Run the agent of one database host (task queue strata-agent.NAME)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			if host == "" {
				return fmt.Errorf("--host is required: the name instances[].host uses for this machine")
			}
			owned := 0
			for _, in := range a.cfg.Instances {
				if in.Host == host {
					owned++
				}
			}
			r, err := workers.OpenRepo(cmd.Context(), a.cfg)
			if err != nil {
				return err
			}
			c, err := workers.Dial(a.cfg, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			log := a.log.With(zap.String("host", host))
			w := workers.NewAgent(c, a.cfg, host, r, log)
			log.Info("agent running", zap.String("task_queue", config.AgentTaskQueue(host)),
				zap.String("archive_task_queue", config.ArchiveTaskQueue(host)), zap.Int("instances", owned),
				zap.Int("max_concurrent", a.cfg.Agent.MaxConcurrentHeavy))
			if owned == 0 {
				log.Warn("no instance in the config names this host; it can still receive restores")
			}
			return w.Run(stopOn(cmd))
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "this host's name, as in instances[].host")
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
