package logging

import (
	"context"
	"reflect"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"
)

// IDs is a worker interceptor that adds instance and backup_id to every log
// line of a workflow or an activity whose input names them (a struct
// argument with an Instance or BackupID string field), next to the
// workflow_id, run_id... the SDK's loggers add. Install it on every worker
// (worker.Options.Interceptors: &logging.IDs{}).
type IDs struct {
	interceptor.WorkerInterceptorBase
}

var _ interceptor.WorkerInterceptor = &IDs{}

// fields are the extra key/value pairs of one workflow execution's logger.
type fields struct{ kv []any }

type fieldsKey struct{}

// AddWorkflowFields adds key/value pairs to every later log line of the
// workflow (e.g. a backup id the workflow chose itself). It issues no
// command, so it changes nothing in the workflow's history. Without IDs on
// the worker it does nothing.
func AddWorkflowFields(ctx workflow.Context, kv ...any) {
	if f, ok := ctx.Value(fieldsKey{}).(*fields); ok {
		f.kv = setKV(f.kv, kv...)
	}
}

// InterceptWorkflow wraps a workflow execution's inbound calls.
func (*IDs) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	in := &wfInbound{f: &fields{}}
	in.Next = next
	return in
}

// InterceptActivity wraps an activity execution's inbound calls.
func (*IDs) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	in := &actInbound{}
	in.Next = next
	return in
}

type wfInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	f *fields
}

func (w *wfInbound) Init(out interceptor.WorkflowOutboundInterceptor) error {
	o := &wfOutbound{f: w.f}
	o.Next = out
	return w.Next.Init(o)
}

func (w *wfInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (interface{}, error) {
	// reflect reads the fields of the decoded input: the same on every replay.
	w.f.kv = IDFields(in.Args) //workflowcheck:ignore
	return w.Next.ExecuteWorkflow(workflow.WithValue(ctx, fieldsKey{}, w.f), in)
}

type wfOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	f *fields
}

func (o *wfOutbound) GetLogger(ctx workflow.Context) log.Logger {
	l := o.Next.GetLogger(ctx)
	if len(o.f.kv) == 0 {
		return l
	}
	return log.With(l, o.f.kv...)
}

type actInbound struct {
	interceptor.ActivityInboundInterceptorBase
}

type actKey struct{}

func (a *actInbound) Init(out interceptor.ActivityOutboundInterceptor) error {
	o := &actOutbound{}
	o.Next = out
	return a.Next.Init(o)
}

func (a *actInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (interface{}, error) {
	if kv := IDFields(in.Args); len(kv) > 0 {
		ctx = context.WithValue(ctx, actKey{}, kv)
	}
	return a.Next.ExecuteActivity(ctx, in)
}

type actOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
}

func (o *actOutbound) GetLogger(ctx context.Context) log.Logger {
	l := o.Next.GetLogger(ctx)
	if kv, ok := ctx.Value(actKey{}).([]any); ok {
		return log.With(l, kv...)
	}
	return l
}

// IDFields returns "instance" and "backup_id" with the values of the first
// argument (a struct or a pointer to one) whose Instance or BackupID string
// field is set.
func IDFields(args []interface{}) []any {
	for _, a := range args {
		v := reflect.ValueOf(a)
		for v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		var kv []any
		for _, f := range []struct{ field, key string }{{"Instance", "instance"}, {"BackupID", "backup_id"}} {
			if fv := v.FieldByName(f.field); fv.IsValid() && fv.Kind() == reflect.String && fv.String() != "" {
				kv = append(kv, f.key, fv.String())
			}
		}
		if len(kv) > 0 {
			return kv
		}
	}
	return nil
}

// setKV sets the pairs of add in kv, replacing a key already there.
func setKV(kv []any, add ...any) []any {
	out := append([]any(nil), kv...)
next:
	for i := 0; i+1 < len(add); i += 2 {
		for j := 0; j+1 < len(out); j += 2 {
			if out[j] == add[i] {
				out[j+1] = add[i+1]
				continue next
			}
		}
		out = append(out, add[i], add[i+1])
	}
	return out
}
