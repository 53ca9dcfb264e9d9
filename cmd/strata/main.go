// Command strata is the single Strata binary: the Temporal worker, the agent
// of a database host, and the operator's commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/logging"
)

// app holds what every command shares.
type app struct {
	configPath string
	logLevel   string
	logJSON    bool
	// logFormat is --log-format: json, console, or empty for the
	// command's default (jsonDefault).
	logFormat string
	// jsonDefault makes JSON the default log format: set by the commands
	// that run as services (strata worker, strata agent).
	jsonDefault bool
	cfg         *config.Config
	log         *zap.Logger
	// expectBytes are the raw bytes the work a.start follows is expected
	// to read or write (0: unknown), for the ETA of --wait's progress.
	expectBytes int64
}

func (a *app) load() error {
	cfg, err := config.Load(a.configPath)
	if err != nil {
		return err
	}
	json, err := a.jsonLogs()
	if err != nil {
		return err
	}
	log, err := logging.New(a.logLevel, json)
	if err != nil {
		return err
	}
	a.cfg, a.log = cfg, log
	return nil
}

// jsonLogs reports whether to log JSON: --log-format, else --log-json,
// else the command's default.
func (a *app) jsonLogs() (bool, error) {
	switch a.logFormat {
	case "":
		return a.logJSON || a.jsonDefault, nil
	case "json":
		return true, nil
	case "console":
		return false, nil
	}
	return false, fmt.Errorf("--log-format %q: use json or console", a.logFormat)
}

// loadFor loads the config and returns the named instance.
func (a *app) loadFor(instance string) (*config.Instance, error) {
	if err := a.load(); err != nil {
		return nil, err
	}
	return a.cfg.Instance(instance)
}

// newRoot builds the command tree.
func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "strata",
		Short:         "Hot physical backups and restores of MySQL and MariaDB, run as Temporal workflows",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.configPath, "config", "", "config file (default $STRATA_CONFIG, then ./strata.yaml)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().BoolVar(&a.logJSON, "log-json", false, "log as JSON")
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "", "json or console (default json for strata worker and strata agent, console otherwise)")
	root.AddCommand(workerCmd(a), agentCmd(a), backupCmd(a), restoreCmd(a), lsCmd(a), infoCmd(a), verifyCmd(a), pruneCmd(a), archiveCmd(a), keyCmd(a), devCmd(a), statusCmd(a))
	root.AddCommand(scheduleCmd(a), policyCmd(a))
	root.AddCommand(drillCmd(a))
	return root
}

func main() {
	a := &app{}
	root := newRoot(a)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "strata: "+explain(err))
		os.Exit(1)
	}
}

// explain returns the innermost application error's message: that is the
// one that says what to fix.
func explain(err error) string {
	var ae *temporal.ApplicationError
	msg := err.Error()
	for e := err; e != nil; e = errors.Unwrap(e) {
		if errors.As(e, &ae) {
			msg = fmt.Sprintf("%s (%s)", ae.Message(), ae.Type())
			e = ae
		}
	}
	return msg
}
