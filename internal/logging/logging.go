// Package logging builds Strata's zap loggers and adapts them to the
// Temporal SDK's logger interface.
package logging

import (
	"fmt"

	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a zap logger at the given level ("debug", "info", "warn",
// "error"); json selects JSON output, otherwise a console encoder.
func New(level string, json bool) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	cfg := zap.NewProductionConfig()
	if !json {
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

// Temporal adapts a zap logger to go.temporal.io/sdk/log.Logger.
type Temporal struct{ z *zap.SugaredLogger }

var _ log.Logger = Temporal{}
var _ log.WithLogger = Temporal{}

// NewTemporal wraps z for the Temporal SDK.
func NewTemporal(z *zap.Logger) Temporal {
	return Temporal{z: z.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

// Debug logs at debug level.
func (t Temporal) Debug(msg string, kv ...any) { t.z.Debugw(msg, kv...) }

// Info logs at info level.
func (t Temporal) Info(msg string, kv ...any) { t.z.Infow(msg, kv...) }

// Warn logs at warn level.
func (t Temporal) Warn(msg string, kv ...any) { t.z.Warnw(msg, kv...) }

// Error logs at error level.
func (t Temporal) Error(msg string, kv ...any) { t.z.Errorw(msg, kv...) }

// With returns a logger with extra key/value pairs.
func (t Temporal) With(kv ...any) log.Logger { return Temporal{z: t.z.With(kv...)} }
