package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/tracing"
)

// startTracing installs the tracer provider of the config's tracing block
// (nothing with exporter none) and returns the function that flushes its
// spans on exit.
func (a *app) startTracing(cmd *cobra.Command, service string) (func(), error) {
	shutdown, err := tracing.Setup(cmd.Context(), a.cfg.Tracing, service)
	if err != nil {
		return nil, err
	}
	if a.cfg.Tracing.Enabled() {
		a.log.Info("tracing", zap.String("exporter", a.cfg.Tracing.Exporter), zap.String("endpoint", a.cfg.Tracing.Endpoint),
			zap.String("protocol", a.cfg.Tracing.Protocol), zap.Float64("sample_ratio", a.cfg.Tracing.Ratio()))
	}
	return func() {
		// The command's context is done by now (SIGTERM): flush on a fresh one.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			a.log.Warn("could not flush the last spans", zap.Error(err))
		}
	}, nil
}
