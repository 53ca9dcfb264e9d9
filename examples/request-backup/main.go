// Command request-backup shows how another service (a schema migrator, a
// deploy pipeline) asks Strata for a backup of an instance before a risky
// change: an Update of the instance's entity workflow (instance/<id>),
// started if it is not running (update-with-start). The answer comes back
// synchronously: accepted, with the backup id and the backup's workflow id,
// or rejected by the entity's validator with the reason. With -wait it then
// waits for the backup's result; with -signal it asks fire-and-forget.
//
//	go run ./examples/request-backup -instance db1 -reason "before migration 0042" -wait
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/workflows"
)

func main() {
	var (
		address   = flag.String("address", "127.0.0.1:7233", "Temporal frontend host:port")
		namespace = flag.String("namespace", "default", "Temporal namespace")
		taskQueue = flag.String("task-queue", "strata", "the strata worker's task queue (temporal.task_queue)")
		instance  = flag.String("instance", "", "instance id, as in strata.yaml (required)")
		ask       workflows.BackupAsk
		wait      = flag.Bool("wait", false, "wait for the backup to finish and print its result")
		signal    = flag.Bool("signal", false, "ask by Signal (fire and forget, no answer) instead of Update")
		timeout   = flag.Duration("timeout", 24*time.Hour, "give up waiting after this long")
	)
	flag.StringVar(&ask.Type, "type", "full", "full, incremental or differential")
	flag.BoolVar(&ask.AutoFull, "auto-full", false, "take a full when an incremental or differential has no base")
	flag.StringVar(&ask.BackupID, "id", "", "backup id (default: chosen by the entity; naming the id of a queued or running backup joins it)")
	flag.StringVar(&ask.RequestedBy, "requested-by", "request-backup-example", "who asks (shown in the entity's status)")
	flag.StringVar(&ask.Reason, "reason", "", "why (shown in the entity's status)")
	flag.Parse()
	if *instance == "" {
		log.Fatal("-instance is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	c, err := client.Dial(client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		log.Fatalf("connect to Temporal at %s: %v", *address, err)
	}
	defer c.Close()

	entityID := workflows.InstanceWorkflowID(*instance)
	start := client.StartWorkflowOptions{
		ID:        entityID,
		TaskQueue: *taskQueue,
		// The entity runs for months: join it if it runs, start it if not.
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    workflows.SearchAttributes(*instance, "instance", "", ""),
	}
	input := workflows.InstanceRequest{Instance: *instance}

	if *signal {
		if _, err := c.SignalWithStartWorkflow(ctx, entityID, workflows.RequestBackupSignal, ask, start, workflows.InstanceWorkflowName, input); err != nil {
			log.Fatalf("signal %s: %v", entityID, err)
		}
		fmt.Printf("asked %s for a %s backup (no answer by Signal: see `temporal workflow query --workflow-id %s --type %s`)\n",
			entityID, ask.Type, entityID, workflows.InstanceStatusQuery)
		return
	}

	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: c.NewWithStartWorkflowOperation(start, workflows.InstanceWorkflowName, input),
		UpdateOptions: client.UpdateWorkflowOptions{
			WorkflowID:   entityID,
			UpdateName:   workflows.RequestBackupUpdate,
			Args:         []any{ask},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		log.Fatalf("request a backup from %s: %v", entityID, err)
	}
	var acc workflows.BackupAccepted
	if err := h.Get(ctx, &acc); err != nil {
		log.Fatalf("rejected: %v", err) // the validator's reason: bad type or id, queue full, ...
	}
	fmt.Printf("accepted: backup %s, workflow %s, position %d, joined %v\n", acc.BackupID, acc.WorkflowID, acc.Position, acc.Joined)
	if !*wait {
		return
	}

	// A queued backup's workflow does not exist until the entity starts it.
	var res workflows.BackupResult
	for {
		err = c.GetWorkflow(ctx, acc.WorkflowID, "").Get(ctx, &res)
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if err != nil {
		log.Fatalf("backup %s failed: %v", acc.BackupID, err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(res)
}
