// Package activities holds Strata's Temporal activities: Catalog runs on the
// `strata` worker and touches only the repository; Agent runs on the agent of
// one database host and touches its servers and datadirs.
package activities

import (
	"errors"
	"fmt"
	"syscall"

	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/xbstream"
)

// Application error types. Each is non-retryable: retrying cannot fix it,
// and its message says what to change.
const (
	ErrUnknownInstance   = "UnknownInstance"
	ErrBackupNotFound    = "BackupNotFound"
	ErrInvalidRequest    = "InvalidRequest"
	ErrAuthFailed        = "AuthFailed"
	ErrServerUnreachable = "ServerUnreachable"
	ErrToolMissing       = "ToolMissing"
	ErrTargetNotEmpty    = "TargetNotEmpty"
	ErrInsufficientSpace = "InsufficientSpace"
	ErrWrongAgent        = "WrongAgent"
	ErrConfig            = "ConfigError"
	ErrCorruptBackup     = "CorruptBackup"
	ErrPortInUse         = "PortInUse"
	ErrToolFailed        = "ToolFailed"
	ErrNoBase            = "NoBaseBackup"
	ErrBrokenChain       = "BrokenChain"
	ErrStalePlan         = "StalePlan"
	ErrOutsideWindow     = "OutsideRecoveryWindow"
	ErrAgentUnavailable  = "AgentUnavailable"
	ErrDecryptFailed     = "DecryptFailed"
	ErrReplayInterrupted = "ReplayInterrupted"
	// Restore target guard and repository trust.
	ErrTargetInUse   = "TargetInUse"
	ErrInvalidTarget = "InvalidTarget"
	ErrBackupIDTaken = "BackupIDTaken"
	ErrLSNMismatch   = "LSNMismatch"
	// ErrUnencrypted: an instance has encryption enabled and the data read
	// is not encrypted (see --allow-unencrypted for old data).
	ErrUnencrypted = "Unencrypted"
	// ErrUnauthenticated: metadata read from the repository does not carry
	// a valid MAC: planted or altered without the key.
	ErrUnauthenticated = "Unauthenticated"
	// ErrPreflightBlocked: the pre-flight check found the source over a
	// threshold (backup.preflight) for the whole budget.
	ErrPreflightBlocked = "PreflightBlocked"
)

// fail returns a non-retryable application error of the given type.
func fail(typ, format string, a ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, a...), typ, nil)
}

// classify turns well-known failures into non-retryable typed errors and
// leaves everything else retryable.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return err
	}
	var ce *mysqlx.ConnError
	if errors.As(err, &ce) {
		switch ce.Kind {
		case mysqlx.KindAuth:
			return fail(ErrAuthFailed, "%s", ce.Msg)
		case mysqlx.KindUnreachable:
			return fail(ErrServerUnreachable, "%s", ce.Msg)
		}
		return err
	}
	switch {
	case errors.Is(err, physical.ErrToolMissing):
		return fail(ErrToolMissing, "%v", err)
	case errors.Is(err, physical.ErrMethod), errors.Is(err, physical.ErrClonePlugin),
		errors.Is(err, physical.ErrClonePrivilege), errors.Is(err, physical.ErrCloneServer):
		return fail(ErrConfig, "%v", err)
	case errors.Is(err, physical.ErrCloneSpace):
		return fail(ErrInsufficientSpace, "%v", err)
	case errors.Is(err, repo.ErrBackupNotFound):
		return fail(ErrBackupNotFound, "%v", err)
	case errors.Is(err, manifest.ErrInvalid):
		return fail(ErrCorruptBackup, "%v", err)
	case errors.Is(err, repo.ErrBrokenChain):
		return fail(ErrBrokenChain, "%v", err)
	case errors.Is(err, repo.ErrNoUsableKey), crypt.IsKeyError(err):
		return fail(ErrDecryptFailed, "%v", err)
	case errors.Is(err, binlog.ErrUnencrypted):
		return fail(ErrUnencrypted, "%v", err)
	case errors.Is(err, binlog.ErrUnauthenticated):
		return fail(ErrUnauthenticated, "%v", err)
	case errors.Is(err, manifest.ErrInvalid), errors.Is(err, binlog.ErrCorrupt), errors.Is(err, repo.ErrInvalidKeyObject),
		errors.Is(err, xbstream.ErrCorrupt):
		return fail(ErrCorruptBackup, "%v", err)
	case errors.Is(err, syscall.ENOSPC):
		return fail(ErrInsufficientSpace, "no space left on device: %v; free space or point storage/target elsewhere, then run again", err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EROFS):
		return fail(ErrConfig, "permission denied: %v; fix the ownership or path", err)
	}
	return err
}
