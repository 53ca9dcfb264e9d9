package workflows

// Values of the StrataKind search attribute (SearchAttributes): what a
// workflow does. `temporal workflow list --query "StrataKind='backup'"`.
const (
	KindBackup    = "backup"
	KindRestore   = "restore"
	KindVerify    = "verify"
	KindRetention = "retention"
	KindArchive   = "archive"
	KindInstance  = "instance"
	KindSchedule  = "schedule"
	KindLimiter   = "limiter"
	KindDrill     = "drill"
	// KindTableRestore: TableRestoreWorkflow.
	KindTableRestore = "table-restore"
)
