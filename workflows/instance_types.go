package workflows

import "time"

// The per-instance entity workflow (InstanceWorkflow, id
// InstanceWorkflowID): the one door for work on an instance. Other services
// ask it for a backup by Update (answered synchronously: accepted with the
// backup id, or rejected by the validator) or by Signal (fire and forget),
// both also with update-/signal-with-start; schedules start their work
// through it too.
const (
	InstanceWorkflowName = "InstanceWorkflow"
	// RequestBackupUpdate is the Update that asks for a backup:
	// BackupAsk in, BackupAccepted out.
	RequestBackupUpdate = "request-backup"
	// RequestBackupSignal asks for a backup without an answer: BackupAsk.
	RequestBackupSignal = "request-backup"
	// InstanceStatusQuery answers InstanceStatus.
	InstanceStatusQuery = "status"
)

// InstanceRequest starts (or continues as new) an instance's entity
// workflow.
type InstanceRequest struct {
	Instance string `json:"instance"`
	// Queue is carried over a continue-as-new: work accepted, not started.
	Queue []BackupAsk `json:"queue,omitempty"`
	// Recent is carried over too: the last finished runs, newest last.
	Recent []InstanceRun `json:"recent,omitempty"`
}

// BackupAsk is a request for a backup of the entity's instance.
type BackupAsk struct {
	// Type is full (default), incremental or differential.
	Type string `json:"type,omitempty"`
	// AutoFull takes a full when an incremental or differential has no base.
	AutoFull bool `json:"auto_full,omitempty"`
	// BackupID is the caller's id for the backup (optional: a default from
	// the time it is accepted). A request with the id of a backup queued
	// or running is joined to it, not queued again.
	BackupID string `json:"backup_id,omitempty"`
	// RequestedBy and Reason say who asks and why (shown in status and in
	// the history), e.g. "schema-migrator", "before migration 0042".
	RequestedBy string `json:"requested_by,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// BackupAccepted answers an accepted RequestBackupUpdate.
type BackupAccepted struct {
	BackupID string `json:"backup_id"`
	// WorkflowID is the backup's workflow (BackupWorkflowID): wait for its
	// result there.
	WorkflowID string `json:"workflow_id"`
	// Position is the request's place: 0 running now (or starting next
	// when none runs), n > 0 n-th behind it.
	Position int `json:"position"`
	// Joined says the request was joined to a backup already queued or
	// running (same id, or same type while queued).
	Joined bool `json:"joined,omitempty"`
}

// InstanceRun is one piece of work of the entity, queued, running or done.
type InstanceRun struct {
	Ask        BackupAsk `json:"ask"`
	BackupID   string    `json:"backup_id"`
	WorkflowID string    `json:"workflow_id"`
	State      string    `json:"state"` // queued, waiting-for-slot, running, succeeded, failed
	Error      string    `json:"error,omitempty"`
	AcceptedAt time.Time `json:"accepted_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// InstanceStatus answers InstanceStatusQuery.
type InstanceStatus struct {
	Instance string        `json:"instance"`
	Running  *InstanceRun  `json:"running,omitempty"`
	Queue    []InstanceRun `json:"queue"`
	Recent   []InstanceRun `json:"recent"`
}
