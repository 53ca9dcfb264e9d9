package activities

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/server"
)

// ErrServerNotReady is the type of the error of a StartServer whose server
// kept running but did not answer in time.
const ErrServerNotReady = "ServerNotReady"

// StartServer starts a server on a restored datadir on this host and checks
// that it answers. The server keeps running after the activity ends.
func (a *Agent) StartServer(ctx context.Context, p StartServerParams) (*StartServerResult, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("target_dir", p.TargetDir), zap.Int("port", p.Port))
	if !filepath.IsAbs(p.TargetDir) {
		return nil, fail(ErrInvalidRequest, "target_dir %q must be an absolute path", p.TargetDir)
	}
	if p.PickPort {
		p.Port = 0
	}
	f := flavor.MariaDB
	if p.Flavor != "" {
		var err error
		if f, err = flavor.ParseName(string(p.Flavor)); err != nil {
			return nil, fail(ErrInvalidRequest, "flavor: %v", err)
		}
	}
	o := server.Options{Datadir: filepath.Clean(p.TargetDir), Port: p.Port, Flavor: f}
	// The restored server has the source's users: check it with the source's
	// credentials when this agent has them.
	if in, err := a.Config.Instance(p.Instance); err == nil {
		o.Binary = in.Tools.Mariadbd
		if f == flavor.MySQL {
			o.Binary = in.Tools.Mysqld
		}
		o.User = in.Connect.User
		if pw, err := in.Password(); err == nil {
			o.Password = pw
		}
	}
	hb := startHeartbeat(ctx, a.heartbeatEvery(), "starting server")
	defer hb.close()
	t0 := time.Now()
	st, err := a.startServer(ctx, o, p.PickPort)
	if err != nil {
		if errors.Is(err, server.ErrPortInUse) {
			return nil, fail(ErrPortInUse, "%v", err)
		}
		// Not the datadir's fault (a drill does not mark its backup for it).
		if errors.Is(err, server.ErrNoBinary) {
			return nil, fail(ErrToolMissing, "%v", err)
		}
		if errors.Is(err, server.ErrNotReady) {
			return nil, fail(ErrServerNotReady, "start server on %s: %v; a loaded host may need more time", p.TargetDir, err)
		}
		log.Error("server did not start", zap.Error(err))
		return nil, fail(ErrToolFailed, "start server on %s: %v", p.TargetDir, err)
	}
	log.Info("server started", zap.Int("pid", st.PID), zap.String("version", st.Version))
	return &StartServerResult{PID: st.PID, Port: st.Port, Socket: st.Socket, ServerVersion: st.Version,
		ErrorLog: st.ErrorLog, StartSeconds: time.Since(t0).Seconds()}, nil
}

// startServer starts the server; with pick, on a free port of 127.0.0.1
// that it picks, picking again (up to 5 times) when another process takes
// the port before the server binds it.
func (a *Agent) startServer(ctx context.Context, o server.Options, pick bool) (*server.Started, error) {
	if !pick {
		return server.Start(ctx, o)
	}
	o.BindAddress = "127.0.0.1"
	var err error
	for i := 0; i < 5; i++ {
		if o.Port, err = freePort(); err != nil {
			return nil, err
		}
		var st *server.Started
		st, err = server.Start(ctx, o)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, server.ErrPortInUse) && !strings.Contains(err.Error(), "Address already in use") {
			return nil, err
		}
		a.logger(ctx).Info("the picked port was taken; picking another", zap.Int("port", o.Port))
	}
	return nil, err
}
