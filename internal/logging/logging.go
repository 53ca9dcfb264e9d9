// Package logging builds Strata's zap loggers and adapts them to the
// Temporal SDK's logger interface.
package logging

import (
	"fmt"
	"strings"
	"unicode"

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
func (t Temporal) Debug(msg string, kv ...any) { t.z.Debugw(msg, SnakeKeys(kv)...) }

// Info logs at info level.
func (t Temporal) Info(msg string, kv ...any) { t.z.Infow(msg, SnakeKeys(kv)...) }

// Warn logs at warn level.
func (t Temporal) Warn(msg string, kv ...any) { t.z.Warnw(msg, SnakeKeys(kv)...) }

// Error logs at error level.
func (t Temporal) Error(msg string, kv ...any) { t.z.Errorw(msg, SnakeKeys(kv)...) }

// With returns a logger with extra key/value pairs.
func (t Temporal) With(kv ...any) log.Logger { return Temporal{z: t.z.With(SnakeKeys(kv)...)} }

// SnakeKeys returns the key/value pairs kv with every string key in
// snake_case: the SDK's WorkflowID, RunID, ActivityType... become
// workflow_id, run_id, activity_type, the spelling of Strata's own log
// lines. Values, zap fields and keys already in snake_case are kept.
func SnakeKeys(kv []any) []any {
	out := make([]any, 0, len(kv))
	for i := 0; i < len(kv); i++ {
		if k, ok := kv[i].(string); ok && i+1 < len(kv) {
			out = append(out, SnakeCase(k), kv[i+1])
			i++
			continue
		}
		out = append(out, kv[i]) // a zap.Field, or a dangling key
	}
	return out
}

// SnakeCase spells a CamelCase key in snake_case, keeping acronyms whole:
// "WorkflowID" is "workflow_id", "RunID" "run_id", "HTTPStatus"
// "http_status"; "backup_id" stays as it is.
func SnakeCase(k string) string {
	var b strings.Builder
	r := []rune(k)
	for i, c := range r {
		if unicode.IsUpper(c) {
			if i > 0 && r[i-1] != '_' && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]) ||
				(i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
