package activities

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/repo"
)

// Agent holds the activities that run on one database host: they reach the
// local servers, their datadirs and the backup tools.
type Agent struct {
	Host   string
	Config *config.Config
	Repo   *repo.Repo
	Log    *zap.Logger
	// HeartbeatEvery is how often progress is heartbeated (default a third
	// of temporal.heartbeat_timeout, at most 10s).
	HeartbeatEvery time.Duration
	// Keys holds the agent's key encryption keys (from the config's
	// encryption block); nil when encryption is not configured. Backups of
	// instances with encryption enabled need it, and so do restores of
	// encrypted backups.
	Keys *crypt.Keyring
	// Limiter caps the bytes per second all of the agent's backups and
	// restores transfer to and from the repository (agent.bandwidth_limit);
	// nil: no limit.
	Limiter *ratelimit.Limiter
	// Policy, when set, holds the live config (reloaded when the file
	// changes): an activity reads its instance's settings from it when it
	// starts. Nil: Config.
	Policy *config.Watcher
}

// cfg returns the live config.
func (a *Agent) cfg() *config.Config {
	if a.Policy != nil {
		return a.Policy.Current()
	}
	return a.Config
}

// binlogStore returns the binlog archive store of an instance, with the
// agent's keys: its segments are encrypted when the instance has
// encryption enabled, and encrypted segments can be read back.
func (a *Agent) binlogStore(instance string) *binlog.Store {
	st := &binlog.Store{B: a.Repo.Backend(), Instance: instance, Keys: a.Keys}
	if in, err := a.cfg().Instance(instance); err == nil {
		st.Encrypt = in.EncryptionEnabled() // without Keys, writing fails saying so
	}
	return st
}

// heartbeatEvery is a third of the heartbeat timeout (at most 10s), so that
// a quiet phase never looks like a dead agent.
func (a *Agent) heartbeatEvery() time.Duration {
	if a.HeartbeatEvery > 0 {
		return a.HeartbeatEvery
	}
	if t := a.Config.Temporal.HeartbeatTimeout.Std(); t > 0 {
		return min(10*time.Second, t/3)
	}
	return 10 * time.Second
}

// instance returns the instance config, checking that this agent owns it.
func (a *Agent) instance(id string) (*config.Instance, error) {
	in, err := a.cfg().Instance(id)
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

// openSource connects to the instance's server (the password never leaves
// the agent) and inspects it; it also returns the endpoint, for the tools
// and connections that follow. The caller closes the DB.
func openSource(ctx context.Context, in *config.Instance) (*sql.DB, *mysqlx.ServerInfo, mysqlx.Endpoint, error) {
	ep, err := endpoint(in)
	if err != nil {
		return nil, nil, ep, err
	}
	db, err := mysqlx.Open(ctx, ep)
	if err != nil {
		return nil, nil, ep, classify(err)
	}
	si, err := mysqlx.Inspect(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, nil, ep, err
	}
	return db, si, ep, nil
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
		// The keys of the SDK's own lines, as logging.Temporal spells them.
		fields = append(fields, zap.String("workflow_id", info.WorkflowExecution.ID),
			zap.String("run_id", info.WorkflowExecution.RunID), zap.String("workflow_type", info.WorkflowType.Name),
			zap.String("activity_type", info.ActivityType.Name), zap.String("activity_id", info.ActivityID),
			zap.Int32("attempt", info.Attempt))
	}
	return l.With(append(fields, zap.String("host", a.Host))...)
}

func sameDir(a, b string) bool {
	return filepath.Clean(strings.TrimRight(a, "/")) == filepath.Clean(strings.TrimRight(b, "/"))
}
