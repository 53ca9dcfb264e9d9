package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/metrics"
)

// metricsListenFlag adds --metrics-listen, which overrides the config key
// named in its help.
func metricsListenFlag(cmd *cobra.Command, addr *string, key string) {
	cmd.Flags().StringVar(addr, "metrics-listen", "",
		"serve Prometheus metrics on http://ADDR/metrics (host:port; overrides "+key+"; empty = the config's, which is off by default)")
}

// startMetrics serves /metrics on addr; nothing when addr is empty. The
// returned stop shuts the server down.
func startMetrics(addr string, log *zap.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	if err := config.CheckListen(addr); err != nil {
		return nil, err
	}
	s, err := metrics.Listen(addr)
	if err != nil {
		return nil, err
	}
	log.Info("serving metrics", zap.String("url", s.URL()))
	return func() {
		if err := s.Close(); err != nil {
			log.Warn("metrics server did not stop cleanly", zap.Error(err))
		}
	}, nil
}
