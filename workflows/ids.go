package workflows

import (
	"path/filepath"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Workflow and schedule ids are business keys (docs/architecture.md,
// "Workflow ids are business keys"): every one is made here, so that the
// CLI, the entity workflow, schedules and other services agree on them.
// Task queues are config.AgentTaskQueue, config.ArchiveTaskQueue and the
// worker's temporal.task_queue.

// BackupWorkflowID is the id of the backup backupID of instance.
func BackupWorkflowID(instance, backupID string) string { return "backup/" + instance + "/" + backupID }

// RestoreWorkflowID is the id of a restore into dir on host: one restore
// per target directory at a time.
func RestoreWorkflowID(host, dir string) string { return "restore/" + host + ":" + filepath.Clean(dir) }

// VerifyWorkflowID is the id of a verify of instance started at at.
func VerifyWorkflowID(instance string, at time.Time) string {
	return "verify/" + instance + "/" + at.UTC().Format(BackupIDFormat)
}

// DrillWorkflowID is the id of drill drillID of instance.
func DrillWorkflowID(instance, drillID string) string { return "drill/" + instance + "/" + drillID }

// RetentionWorkflowID is the id of instance's retention run: one at a time.
func RetentionWorkflowID(instance string) string { return "retention/" + instance }

// ArchiveWorkflowID is the id of instance's binlog archiver: one per
// instance.
func ArchiveWorkflowID(instance string) string { return "archive/" + instance }

// InstanceWorkflowID is the id of instance's entity workflow, the one
// door for work on it.
func InstanceWorkflowID(instance string) string { return "instance/" + instance }

// ScheduleID is the id of the Temporal Schedule of kind (full,
// incremental, verify, prune, drill) for instance.
func ScheduleID(instance, kind string) string { return "strata/" + instance + "/" + kind }

// Search attributes every Strata workflow carries, so that `temporal
// workflow list --query "StrataInstance='db1'"` and the Web UI filter by
// instance, kind, backup and host. They must be registered on the
// namespace (SearchAttributeArgs: the dev server's --search-attribute
// flags; `temporal operator search-attribute create` on a cluster).
var (
	SAInstance = temporal.NewSearchAttributeKeyKeyword("StrataInstance")
	SAKind     = temporal.NewSearchAttributeKeyKeyword("StrataKind")
	SABackupID = temporal.NewSearchAttributeKeyKeyword("StrataBackupID")
	SAHost     = temporal.NewSearchAttributeKeyKeyword("StrataHost")
)

// SearchAttributeNames are the names of the search attributes, all of
// type Keyword.
var SearchAttributeNames = []string{"StrataInstance", "StrataKind", "StrataBackupID", "StrataHost"}

// SearchAttributeArgs are the `temporal server start-dev` flags that
// register them.
func SearchAttributeArgs() []string {
	var out []string
	for _, n := range SearchAttributeNames {
		out = append(out, "--search-attribute", n+"=Keyword")
	}
	return out
}

// SearchAttributes are the attributes of a workflow of kind (backup,
// restore, verify, retention, archive, instance, schedule, drill) on
// instance; empty values are left out.
func SearchAttributes(instance, kind, backupID, host string) temporal.SearchAttributes {
	var up []temporal.SearchAttributeUpdate
	for _, kv := range []struct {
		k temporal.SearchAttributeKeyKeyword
		v string
	}{{SAInstance, instance}, {SAKind, kind}, {SABackupID, backupID}, {SAHost, host}} {
		if kv.v != "" {
			up = append(up, kv.k.ValueSet(kv.v))
		}
	}
	return temporal.NewSearchAttributes(up...)
}

// LimiterWorkflowID is the id of the limiter workflow of a fleet-wide
// limit (activities.Limit): limiter/fleet/backup, limiter/fleet/restore,
// limiter/storage/<target>.
func LimiterWorkflowID(scope, name string) string { return "limiter/" + scope + "/" + name }

// LoadWorkflowID is the id of the RestoreWorkflow that loads logical
// backup backupID into the running server of instance into: one load of a
// backup into an instance at a time.
func LoadWorkflowID(into, backupID string) string {
	return "load/" + into + "/" + backupID
}
