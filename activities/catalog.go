package activities

import (
	"context"

	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
)

// Catalog holds the activities that need only the configuration and the
// repository; they run on the `strata` worker.
type Catalog struct {
	Config *config.Config
	Repo   *repo.Repo
	// Policy, when set, holds the live config (reloaded when the file
	// changes); nil: Config.
	Policy *config.Watcher
	// Client starts and signals limiter workflows (RequestPermit) and
	// describes their holders (ClosedHolders).
	Client client.Client
}

// cfg returns the live config.
func (c *Catalog) cfg() *config.Config {
	if c.Policy != nil {
		return c.Policy.Current()
	}
	return c.Config
}

// ResolveInstance returns where the instance's host activities run.
func (c *Catalog) ResolveInstance(_ context.Context, req InstanceRequest) (*InstanceRoute, error) {
	in, err := c.cfg().Instance(req.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v (in %s)", err, c.Config.Path)
	}
	return &InstanceRoute{
		Instance:          in.ID,
		Host:              in.Host,
		TaskQueue:         config.AgentTaskQueue(in.Host),
		ArchiveTaskQueue:  config.ArchiveTaskQueue(in.Host),
		AgentStartTimeout: c.Config.Temporal.AgentStartTimeout.Std(),
		HeartbeatTimeout:  c.Config.Temporal.HeartbeatTimeout.Std(),
		BackupTimeout:     in.Backup.BackupTimeout.Std(),
		PreflightTimeout:  in.Backup.Preflight.Budget.Std() + preflightMargin,
		Limits:            c.limits(),
	}, nil
}

// Summarize drops the chunk list of a manifest.
func Summarize(m *manifest.Manifest) *BackupSummary {
	s := summarize(m)
	if s.UploadedBytes+s.ReusedBytes == 0 {
		s.UploadedBytes = s.StoredSize // a manifest written before resume was counted
	}
	return s
}

func summarize(m *manifest.Manifest) *BackupSummary {
	var fl flavor.Name
	if f, err := m.Flavor(); err == nil {
		fl = f.Name
	}
	return &BackupSummary{
		ServerFlavor: fl,
		Instance:     m.Instance, BackupID: m.BackupID, Type: m.Type, ParentID: m.ParentID,
		Tool: m.Tool, ServerVersion: m.ServerVersion,
		StartTime: m.StartTime, EndTime: m.EndTime, ConsistentAt: m.ConsistentAt,
		FromLSN: m.FromLSN, ToLSN: m.ToLSN,
		BinlogFile: m.BinlogFile, BinlogPos: m.BinlogPos, GTIDSet: m.GTIDSet,
		RawSize: m.RawSize, StoredSize: m.StoredSize, Chunks: len(m.Chunks), Compression: m.Compression,
		Encrypted: m.Encrypted, EncryptionKeyID: m.EncryptionKeyID,
		UploadedBytes: m.UploadedBytes, ReusedBytes: m.ReusedBytes,
		CommitsBlockedSeconds: m.LockDuration.Std().Seconds(),
		DDLBlockedSeconds:     m.DDLLockDuration.Std().Seconds(),
		DurationSeconds:       m.Duration.Std().Seconds(),
	}
}
