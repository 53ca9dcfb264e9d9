package activities

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/tablecopy"
)

// Error types of a single-table restore.
const (
	// ErrTableNotFound: the table is not in the backup at the restore's
	// point (it was created later, or dropped earlier, or is misspelt).
	ErrTableNotFound = "TableNotFound"
	// ErrTableExists: the destination name is taken on the live server.
	ErrTableExists = "TableExists"
	// ErrTableNotTransportable: the table's tablespace cannot move into
	// the live server (its engine, partitioning, or the servers'
	// versions), and the logical copy is not available.
	ErrTableNotTransportable = "TableNotTransportable"
	// ErrTableMismatch: the imported table's rows or checksum are not the
	// source's.
	ErrTableMismatch = "TableMismatch"
)

// TableCheckParams asks the agent of the live instance whether a table
// can be restored into it under Dest.
type TableCheckParams struct {
	// Into is the live instance.
	Into    string              `json:"into"`
	Dest    tablecopy.TableName `json:"dest"`
	Replace bool                `json:"replace,omitempty"`
}

// TableCheckResult is what the live server said.
type TableCheckResult struct {
	// Exists says Dest is on the live server (which Replace allows).
	Exists        bool   `json:"exists"`
	ServerVersion string `json:"server_version"`
	Datadir       string `json:"datadir"`
}

// CheckTableDestination checks on the live server, before any restore
// work, that the destination's schema exists, that its name is free
// (unless Replace), and that the live server's datadir is the configured
// one (the table's files are copied into it).
func (a *Agent) CheckTableDestination(ctx context.Context, p TableCheckParams) (*TableCheckResult, error) {
	in, err := a.instance(p.Into)
	if err != nil {
		return nil, err
	}
	if err := p.Dest.Validate(); err != nil {
		return nil, fail(ErrInvalidRequest, "%v", err)
	}
	db, si, _, err := openSource(ctx, in)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	srv, err := tablecopy.InspectServer(ctx, db)
	if err != nil {
		return nil, classify(err)
	}
	if err := tablecopy.SameDatadir(in.Datadir, srv.Datadir); err != nil {
		return nil, tableError(err, "")
	}
	exists, err := tablecopy.CheckDestination(ctx, db, p.Dest, p.Replace)
	if err != nil {
		return nil, tableError(err, "")
	}
	return &TableCheckResult{Exists: exists, ServerVersion: si.Version, Datadir: in.Datadir}, nil
}

// TableImportParams asks the agent of the live instance to bring one
// table from the scratch server (on this host) into the live server.
type TableImportParams struct {
	// Instance is the backup's instance: the scratch server has its users.
	Instance string `json:"instance"`
	// Into is the live instance (this agent's).
	Into      string `json:"into"`
	RestoreID string `json:"restore_id"`
	// Source is the table on the scratch server, Dest its name on the
	// live one.
	Source  tablecopy.TableName `json:"source"`
	Dest    tablecopy.TableName `json:"dest"`
	Replace bool                `json:"replace,omitempty"`
	// ScratchDatadir and Port are the scratch server's.
	ScratchDatadir string `json:"scratch_datadir"`
	Port           int    `json:"port"`
	// Point describes the restore's point (for messages).
	Point string `json:"point,omitempty"`
}

// ImportTable copies the table from the scratch server into the live
// server (tablecopy.Copy): by moving its tablespace where it can, else by
// the logical copy; verified by row count and CHECKSUM TABLE. A retried
// attempt removes what an earlier one left.
func (a *Agent) ImportTable(ctx context.Context, p TableImportParams) (*tablecopy.Result, error) {
	in, err := a.instance(p.Into)
	if err != nil {
		return nil, err
	}
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("into", p.Into), zap.String("table", p.Source.String()),
		zap.String("dest", p.Dest.String()), zap.String("restore_id", p.RestoreID))
	live, _, _, err := openSource(ctx, in)
	if err != nil {
		return nil, err
	}
	defer live.Close()
	ep := mysqlx.Endpoint{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)), User: "root"}
	if src, err := a.cfg().Instance(p.Instance); err == nil {
		ep.User = src.Connect.User
		if pw, err := src.Password(); err == nil {
			ep.Password = pw
		}
	}
	scratch, err := mysqlx.Open(ctx, ep)
	if err != nil {
		return nil, classify(err)
	}
	defer scratch.Close()
	hb := startHeartbeat(ctx, a.heartbeatEvery(), "importing "+p.Source.String())
	defer hb.close()
	res, err := tablecopy.Copy(ctx, tablecopy.Params{
		Scratch: scratch, ScratchDatadir: p.ScratchDatadir, Live: live, LiveDatadir: in.Datadir,
		Src: p.Source, Dst: p.Dest, RestoreID: p.RestoreID, Replace: p.Replace, Retry: activity.IsActivity(ctx) && activity.GetInfo(ctx).Attempt > 1,
		Progress: func(step string, n int64) { hb.update(ctx, fmt.Sprintf("%s: %d bytes", step, n)) },
	})
	if err != nil {
		log.Error("table import failed", zap.Error(err))
		return nil, tableError(err, p.Point)
	}
	log.Info("table imported", zap.String("method", res.Method), zap.Int64("rows", res.DestSum.Rows),
		zap.String("checksum", res.DestSum.Checksum), zap.Int64("bytes", res.Bytes))
	return res, nil
}

// tableError maps tablecopy's errors to typed application errors.
func tableError(err error, point string) error {
	at := ""
	if point != "" {
		at = " at " + point
	}
	switch {
	case errors.Is(err, tablecopy.ErrTableNotFound):
		return fail(ErrTableNotFound, "%v: the table is not in the backup%s (check its name, or pick a point where it existed)", err, at)
	case errors.Is(err, tablecopy.ErrTableExists):
		return fail(ErrTableExists, "%v", err)
	case errors.Is(err, tablecopy.ErrSchemaNotFound):
		return fail(ErrInvalidRequest, "%v", err)
	case errors.Is(err, tablecopy.ErrNotTransportable):
		return fail(ErrTableNotTransportable, "%v", err)
	case errors.Is(err, tablecopy.ErrMismatch):
		return fail(ErrTableMismatch, "%v", err)
	case errors.Is(err, tablecopy.ErrDatadir):
		return fail(ErrConfig, "%v", err)
	}
	return classify(err)
}
