package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
)

// recordHistories writes the history of every workflow the stack's Temporal
// server ran into $STRATA_RECORD_HISTORIES (one JSON file per workflow,
// named by its type and test; a workflow still running is recorded as far
// as it got), in the format of `temporal workflow show
// --output json`. workflows/replay_test.go replays those files against the
// current workflow code, so a change to a workflow's command sequence that
// is not behind workflow.GetVersion fails the build of running workflows in
// a test instead of in production. Nothing happens when the variable is
// unset.
func (s *stack) recordHistories() {
	dir := os.Getenv("STRATA_RECORD_HISTORIES")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc := s.client.WorkflowService()
	ns := s.cfg.Temporal.Namespace
	var token []byte
	n := 0
	for {
		resp, err := svc.ListWorkflowExecutions(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: ns, PageSize: 100, NextPageToken: token,
		})
		if err != nil {
			s.t.Logf("record histories: list workflows: %v", err)
			return
		}
		for _, e := range resp.Executions {
			hist := &historypb.History{}
			it := s.client.GetWorkflowHistory(ctx, e.Execution.WorkflowId, e.Execution.RunId, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					s.t.Logf("record histories: %s: %v", e.Execution.WorkflowId, err)
					return
				}
				hist.Events = append(hist.Events, ev)
			}
			data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
			if err != nil {
				s.t.Logf("record histories: encode %s: %v", e.Execution.WorkflowId, err)
				return
			}
			n++
			name := fmt.Sprintf("%s-%s-%02d.json", e.Type.Name, strings.ReplaceAll(s.t.Name(), "/", "_"), n)
			if err := os.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o644); err != nil {
				s.t.Logf("record histories: %v", err)
				return
			}
		}
		token = resp.NextPageToken
		if len(token) == 0 {
			return
		}
	}
}
