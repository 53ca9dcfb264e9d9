package activities

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/repo"
)

// Agent holds the activities that run on one database host: they reach the
// local servers, their datadirs and the backup tools.
type Agent struct {
	Host   string
	Config *config.Config
	Repo   *repo.Repo
	Log    *zap.Logger
	// HeartbeatEvery is how often progress is heartbeated (default 10s).
	HeartbeatEvery time.Duration
}

func (a *Agent) heartbeatEvery() time.Duration {
	if a.HeartbeatEvery > 0 {
		return a.HeartbeatEvery
	}
	return 10 * time.Second
}

// instance returns the instance config, checking that this agent owns it.
func (a *Agent) instance(id string) (*config.Instance, error) {
	in, err := a.Config.Instance(id)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v (agent %s, config %s)", err, a.Host, a.Config.Path)
	}
	if in.Host != a.Host {
		return nil, fail(ErrWrongAgent, "instance %s belongs to host %s, but this is the agent of host %s: check instances[].host and the agent's --host", in.ID, in.Host, a.Host)
	}
	return in, nil
}

// endpoint resolves how to connect, including the password (which never
// leaves the agent).
func endpoint(in *config.Instance) (mysqlx.Endpoint, error) {
	pw, err := in.Password()
	if err != nil {
		return mysqlx.Endpoint{}, fail(ErrConfig, "%v", err)
	}
	return mysqlx.Endpoint{Socket: in.Connect.Socket, Address: in.Connect.Address, User: in.Connect.User, Password: pw}, nil
}

func toolPaths(in *config.Instance) physical.Paths {
	return physical.Paths{Mariabackup: in.Tools.Mariabackup, Mbstream: in.Tools.Mbstream,
		Xtrabackup: in.Tools.Xtrabackup, Xbstream: in.Tools.Xbstream}
}

// logger returns a zap logger with the activity's identifying fields.
func (a *Agent) logger(ctx context.Context, fields ...zap.Field) *zap.Logger {
	l := a.Log
	if l == nil {
		l = zap.NewNop()
	}
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		fields = append(fields, zap.String("workflow_id", info.WorkflowExecution.ID),
			zap.String("activity", info.ActivityType.Name), zap.Int32("attempt", info.Attempt))
	}
	return l.With(append(fields, zap.String("host", a.Host))...)
}

func sameDir(a, b string) bool {
	return filepath.Clean(strings.TrimRight(a, "/")) == filepath.Clean(strings.TrimRight(b, "/"))
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
