// Package config loads and validates strata.yaml: the Temporal connection, the
// repository storage, the agent limits and the database instances Strata backs up.
//
// Secrets never travel through workflows: an instance names an environment
// variable or a file for its password, and only the agent that owns the
// instance resolves it.
package config

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/strata-backup/strata/internal/logical"
)

// EnvConfig is the environment variable that names the config file when
// --config is not given.
const EnvConfig = "STRATA_CONFIG"

// DefaultTaskQueue is the task queue of `strata worker`.
const DefaultTaskQueue = "strata"

// AgentTaskQueue returns the task queue of the agent that owns host.
func AgentTaskQueue(host string) string { return "strata-agent." + host }

// ArchiveTaskQueue returns the task queue of the binlog archivers of host.
func ArchiveTaskQueue(host string) string { return "strata-agent." + host + ".binlog" }

// Config is the whole strata.yaml.
type Config struct {
	Temporal  Temporal  `yaml:"temporal"`
	Storage   Storage   `yaml:"storage"`
	Agent     Agent     `yaml:"agent"`
	Defaults  Backup    `yaml:"defaults"`
	Retention Retention `yaml:"retention"`
	// Encryption configures encryption at rest; when no key is named,
	// backups and binlog archives are stored unencrypted.
	Encryption Encryption `yaml:"encryption"`
	Instances  []Instance `yaml:"instances"`
	// Schedule is the fleet's default schedule policy (see Schedule);
	// instances[].schedule overrides it field by field.
	Schedule Schedule `yaml:"schedule"`
	// Fleet holds limits over all agents (see fleet.go).
	Fleet Fleet `yaml:"fleet"`
	// Tracing configures OpenTelemetry traces (see tracing.go); off by default.
	Tracing Tracing `yaml:"tracing"`
	// Metrics configures the /metrics endpoints (see metrics.go).
	Metrics Metrics `yaml:"metrics"`
	// Drill holds the defaults of restore drills; instances[].drill
	// overrides them.
	Drill Drill `yaml:"drill"`

	// Path is the file the config was loaded from (not part of the YAML).
	Path string `yaml:"-"`
}

// Temporal says how to reach the Temporal frontend.
type Temporal struct {
	Address   string `yaml:"address"`    // host:port, default 127.0.0.1:7233
	Namespace string `yaml:"namespace"`  // default "default"
	TaskQueue string `yaml:"task_queue"` // worker task queue, default "strata"
	// AgentStartTimeout bounds how long a host activity waits for its agent
	// to pick it up before the workflow reports the agent as unavailable.
	AgentStartTimeout Duration `yaml:"agent_start_timeout"` // default 5m
	// HeartbeatTimeout is how long a silent agent activity is given before
	// Temporal declares the agent dead and retries elsewhere (default 30s;
	// agents heartbeat every 10s).
	HeartbeatTimeout Duration `yaml:"heartbeat_timeout"`
	TLS              TLS      `yaml:"tls"`
	// APIKeyEnv names an environment variable holding a Temporal Cloud API key.
	APIKeyEnv string `yaml:"api_key_env"`
}

// TLS configures the connection to Temporal: server verification with a CA
// file (or the system roots), and a client certificate for mTLS.
type TLS struct {
	Enabled    bool   `yaml:"enabled"` // implied by any file below
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Storage selects the repository backend.
type Storage struct {
	Type  string       `yaml:"type"` // local | gcs
	Local LocalStorage `yaml:"local"`
	GCS   GCSStorage   `yaml:"gcs"`
	// MaxConcurrent bounds the backups and restores that read or write
	// this storage target at once, over the whole fleet; 0 = no limit.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// LocalStorage is a repository in a local (or mounted) directory.
type LocalStorage struct {
	Root string `yaml:"root"`
}

// GCSStorage is a repository in a Google Cloud Storage bucket.
type GCSStorage struct {
	Bucket          string `yaml:"bucket"`
	Prefix          string `yaml:"prefix"`
	CredentialsFile string `yaml:"credentials_file"`
}

// Agent holds limits of `strata agent`.
type Agent struct {
	// MaxConcurrentHeavy is how many backups/restores one agent runs at once.
	MaxConcurrentHeavy int `yaml:"max_concurrent"` // default 1
	// ScratchDir holds temporary files of the tools (never backup data).
	ScratchDir string `yaml:"scratch_dir"` // default os.TempDir()
	// BandwidthLimit caps the bytes per second the agent transfers to and
	// from the repository, shared by all its backups and restores; 0 = no
	// limit.
	BandwidthLimit ByteSize `yaml:"bandwidth_limit"`
}

// Encryption names the key encryption keys (KEKs) of the agents. Each
// backup gets a random data key, stored only wrapped by the current KEK;
// old KEKs are kept to unwrap backups taken before a rotation (see `strata
// key rotate`). A key is 32 bytes in a file (raw, hex or base64) or in an
// environment variable (hex or base64); generate one with `openssl rand
// -hex 32`.
type Encryption struct {
	KeyFile     string   `yaml:"key_file"`
	KeyEnv      string   `yaml:"key_env"`
	OldKeyFiles []string `yaml:"old_key_files"`
	OldKeyEnvs  []string `yaml:"old_key_envs"`
}

// Configured reports whether a current key is named: new backups are then
// encrypted (unless an instance opts out).
func (e Encryption) Configured() bool { return e.KeyFile != "" || e.KeyEnv != "" }

// InstanceEncryption lets an instance opt out of encryption at rest.
type InstanceEncryption struct {
	// Enabled defaults to whether the top-level encryption block names a
	// key; false stores this instance's backups unencrypted.
	Enabled *bool `yaml:"enabled"`
}

// Backup holds per-instance backup settings; Config.Defaults applies to
// every instance that leaves a field unset.
type Backup struct {
	Compression      string   `yaml:"compression"`       // zstd (default) | lz4 | s2 | gzip | none
	CompressionLevel int      `yaml:"compression_level"` // codec level, 0 = codec default
	ChunkSize        ByteSize `yaml:"chunk_size"`        // default 16MiB
	Parallelism      int      `yaml:"parallelism"`       // compress/upload workers, default 2
	UseMemory        ByteSize `yaml:"prepare_memory"`    // --use-memory for --prepare, default (0) derived from the host
	BackupTimeout    Duration `yaml:"timeout"`           // whole backup activity, default 24h
	// MaxChainLength forces a full backup when an incremental would make the
	// chain (full + incrementals) longer than this; 0 = no limit.
	MaxChainLength int `yaml:"max_chain_length"`
	// Throttle caps the raw bytes per second one backup reads from its
	// tool, which slows the tool's reads of the source server; 0 = no
	// limit. agent.bandwidth_limit caps the agent's total to the repository.
	Throttle ByteSize `yaml:"throttle"`
	// Preflight is the load check before a backup locks anything.
	Preflight Preflight `yaml:"preflight"`
	// TableSums records the row count and checksum of every InnoDB table
	// of the user schemas in the manifest, read in a consistent snapshot
	// at the backup's consistent point, for restore drills to verify
	// against (default false; MariaDB only). It reads all the user data once
	// more while the backup copies it, in a snapshot as old as the backup:
	// under writes each row read rebuilds its old version from the undo
	// log, which cost 70 s of server CPU on a 2 GiB set under a 4-thread
	// write load (docs/performance.md).
	TableSums *bool `yaml:"table_sums"`
	// TableSumsMaxSize skips the sums when the InnoDB user data is larger
	// (information_schema's data + index length); default 50GiB.
	TableSumsMaxSize ByteSize `yaml:"table_sums_max_size"`
	// LogCopyInterval is how often the backup tool's redo-log copy thread
	// polls for new redo (mariabackup/xtrabackup --log-copy-interval). It
	// bounds how long commits stay blocked at the consistent point: the
	// tool holds the commit lock until the copy thread has caught up, one
	// poll at most. Default 100ms (the tools' own default is 1s); range
	// 1ms..10s.
	LogCopyInterval Duration `yaml:"log_copy_interval"`
	// Method is the physical backup method: auto (default: mariabackup for
	// MariaDB; for MySQL xtrabackup when it is installed, else clone),
	// mariabackup, xtrabackup or clone (MySQL's clone plugin; full backups
	// only). A method that does not fit the server's flavor fails the
	// backup with an error naming the fix.
	Method string `yaml:"method"`
	// CloneInstallPlugin lets a clone backup install the clone plugin
	// (INSTALL PLUGIN clone SONAME 'mysql_clone.so') when the server has
	// not loaded it (default true).
	CloneInstallPlugin *bool `yaml:"clone_install_plugin"`
	// CloneDir is the directory a clone backup writes its local copy into
	// (as strata-clone-<backup id>, removed as it is streamed); default the
	// datadir's parent. It must be on a filesystem with room for the data,
	// writable by the server's OS user; the datadir's filesystem keeps the
	// clone fast.
	CloneDir string `yaml:"clone_dir"`
	// Logical configures logical backups (type logical: Strata's own
	// parallel dump, see docs/logical.md).
	Logical Logical `yaml:"logical"`
}

// Logical configures the logical dump of an instance. Each field left unset
// inherits from defaults.backup.logical, then the default in the comment.
type Logical struct {
	// Threads is the number of connections that read the shared snapshot
	// at once (default 2).
	Threads int `yaml:"threads"`
	// FileSize is the raw size at which a table's rows are cut into the next
	// data file, a primary-key range (default 32MiB). A load runs one
	// transaction per file, and a resumed load skips whole files.
	FileSize ByteSize `yaml:"file_size"`
	// Include and Exclude select tables by "schema.table" patterns (* and ?
	// match within a name); default every user table.
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// Backup methods (backup.method).
const (
	MethodAuto        = "auto"
	MethodMariabackup = "mariabackup"
	MethodXtrabackup  = "xtrabackup"
	MethodClone       = "clone"
)

// CloneInstall reports whether a clone backup may install the clone plugin.
func (b Backup) CloneInstall() bool { return b.CloneInstallPlugin == nil || *b.CloneInstallPlugin }

// DefaultLogCopyInterval is backup.log_copy_interval's default.
const DefaultLogCopyInterval = 100 * time.Millisecond

// SumsOn reports whether the backup records table sums.
func (b Backup) SumsOn() bool { return b.TableSums != nil && *b.TableSums }

// DefaultTableSumsMaxSize is backup.table_sums_max_size's default.
const DefaultTableSumsMaxSize = 50 << 30

// Preflight configures the pre-flight check of a backup: before the backup
// tool starts, the agent checks the source server against these thresholds
// and, while one is exceeded, checks again every Recheck until Budget has
// passed; then the backup fails (PreflightBlocked) naming what blocked.
// Each field left unset inherits from defaults.preflight, then the
// default in the comment.
type Preflight struct {
	// Enabled: false skips the check (default true).
	Enabled           *bool    `yaml:"enabled"`
	MaxTrxAge         Duration `yaml:"max_trx_age"`         // oldest open transaction, default 5m
	MaxThreadsRunning int      `yaml:"max_threads_running"` // Threads_running, default 64
	MaxReplicationLag Duration `yaml:"max_replication_lag"` // Seconds_Behind_Master of a replica, default 5m
	MinFreeDisk       ByteSize `yaml:"min_free_disk"`       // free in agent.scratch_dir, default 1GiB
	Budget            Duration `yaml:"budget"`              // how long to wait for the load to pass, default 10m
	Recheck           Duration `yaml:"recheck"`             // time between checks, default 15s
}

// On reports whether the check runs.
func (p Preflight) On() bool { return p.Enabled == nil || *p.Enabled }

// inherit sets *dst to src when *dst is unset (its type's zero value): a
// field an instance leaves out takes the default's.
func inherit[T comparable](dst *T, src T) {
	var zero T
	if *dst == zero {
		*dst = src
	}
}

// inherit fills the unset fields of p from d.
func (p *Preflight) inherit(d Preflight) {
	inherit(&p.Enabled, d.Enabled)
	inherit(&p.MaxTrxAge, d.MaxTrxAge)
	inherit(&p.MaxThreadsRunning, d.MaxThreadsRunning)
	inherit(&p.MaxReplicationLag, d.MaxReplicationLag)
	inherit(&p.MinFreeDisk, d.MinFreeDisk)
	inherit(&p.Budget, d.Budget)
	inherit(&p.Recheck, d.Recheck)
}

// Preflight defaults.
var defaultPreflight = Preflight{
	MaxTrxAge: Duration(5 * time.Minute), MaxThreadsRunning: 64, MaxReplicationLag: Duration(5 * time.Minute),
	MinFreeDisk: 1 << 30, Budget: Duration(10 * time.Minute), Recheck: Duration(15 * time.Second),
}

// maxPreflightBudget bounds backup.preflight.budget.
const maxPreflightBudget = 24 * time.Hour

func validatePreflight(key string, p *Preflight, bad func(key, format string, a ...any)) {
	key += ".preflight"
	for name, v := range map[string]Duration{"max_trx_age": p.MaxTrxAge, "max_replication_lag": p.MaxReplicationLag} {
		if v < Duration(time.Second) {
			bad(key+"."+name, "%s is too short: use at least 1s", time.Duration(v))
		}
	}
	if p.MaxThreadsRunning < 1 {
		bad(key+".max_threads_running", "%d must be at least 1", p.MaxThreadsRunning)
	}
	if p.Budget < 0 || p.Budget > Duration(maxPreflightBudget) {
		bad(key+".budget", "%s is out of range (0s to %s; 0 = the default 10m)", time.Duration(p.Budget), maxPreflightBudget)
	}
	if p.Recheck < Duration(time.Second) || p.Recheck > Duration(time.Hour) {
		bad(key+".recheck", "%s is out of range (1s to 1h)", time.Duration(p.Recheck))
	}
}

// Retention is the retention policy of an instance.
type Retention struct {
	KeepFull int `yaml:"keep_full"` // keep the newest N fulls and everything that depends on them
	KeepDays int `yaml:"keep_days"` // keep every backup that ended within D days
	KeepMin  int `yaml:"keep_min"`  // never keep fewer than M backups
	// PartialGrace is how old an abandoned partial upload (chunks without a
	// manifest, and no live lease) must be before it is removed. It must
	// exceed the longest one backup can take (MaxBackupSpan); default that
	// plus an hour, rounded up to hours, at least 24h.
	PartialGrace Duration `yaml:"partial_grace"`
}

// Instance is one database server Strata backs up.
type Instance struct {
	ID      string  `yaml:"id"`
	Host    string  `yaml:"host"` // the agent host that owns it
	Connect Connect `yaml:"connect"`
	Datadir string  `yaml:"datadir"`
	Tools   Tools   `yaml:"tools"`
	Backup  Backup  `yaml:"backup"`
	// Retention overrides the top-level retention policy field by field.
	Retention Retention `yaml:"retention"`
	Archive   Archive   `yaml:"archive"`
	// Encryption overrides whether this instance's backups are encrypted.
	Encryption InstanceEncryption `yaml:"encryption"`
	// Schedule overrides the top-level schedule policy field by field.
	Schedule Schedule `yaml:"schedule"`
	// Drill overrides the top-level drill settings.
	Drill Drill `yaml:"drill"`
	// Heartbeat, when its table is set, has the agent write the time
	// into a row of that table every Every, so that a restore drill
	// measures its recovery point exactly.
	Heartbeat Heartbeat `yaml:"heartbeat"`
}

// Heartbeat configures an instance's heartbeat table (off unless Table is
// set).
type Heartbeat struct {
	Table string   `yaml:"table"` // schema.table, e.g. strata.heartbeat
	Every Duration `yaml:"every"` // default 1s
}

// Drill configures restore drills (DrillWorkflow).
type Drill struct {
	// Host is the agent host whose scratch area receives the drill's
	// scratch server; default the instance's own host.
	Host string `yaml:"host"`
	// PointInTime: when the binlog archive reaches past the drilled
	// backup, the drill also replays it to the newest archived
	// transaction (default true); false drills the backup alone.
	PointInTime *bool `yaml:"point_in_time"`
}

// DrillPointInTime reports whether a drill of the instance without a
// target replays the archive to its newest transaction
// (instances[].drill.point_in_time, else drill.point_in_time, default true).
func (c *Config) DrillPointInTime(in *Instance) bool {
	switch {
	case in.Drill.PointInTime != nil:
		return *in.Drill.PointInTime
	case c.Drill.PointInTime != nil:
		return *c.Drill.PointInTime
	}
	return true
}

// DrillHost returns the host a drill of the instance runs on.
func (c *Config) DrillHost(in *Instance) string {
	switch {
	case in.Drill.Host != "":
		return in.Drill.Host
	case c.Drill.Host != "":
		return c.Drill.Host
	}
	return in.Host
}

// EncryptionEnabled reports whether new backups and binlog segments of the
// instance are encrypted.
func (in *Instance) EncryptionEnabled() bool {
	return in.Encryption.Enabled != nil && *in.Encryption.Enabled
}

// Archive configures continuous binlog archiving of an instance.
type Archive struct {
	// FlushInterval is the longest an event waits before it is durable in
	// the repository (the RPO); default 1s.
	FlushInterval Duration `yaml:"flush_interval"`
	// MaxSegmentSize closes a segment early; default 8MiB.
	MaxSegmentSize ByteSize `yaml:"max_segment_size"`
	// ReplicaServerID is the server_id the archiver registers with; it must
	// differ from every server and replica. Default: derived from the id.
	ReplicaServerID uint32 `yaml:"replica_server_id"`
	// ReplayMethod applies binlogs in a point-in-time restore: replica (the
	// restored server's SQL thread, in parallel; default for MariaDB) or
	// client (mariadb-binlog | mariadb).
	ReplayMethod string `yaml:"replay_method"`
	// ReplayThreads is the parallel applier threads of the replica method (default 4).
	ReplayThreads int `yaml:"replay_threads"`
	// ReplayMemory is the buffer pool (innodb_buffer_pool_size) of the
	// server a point-in-time restore runs to apply binlogs. 0 (default):
	// half of the host's MemAvailable less 512MiB, at most the size of the
	// restored InnoDB files, at least 128MiB (see replay.DefaultBufferPool).
	ReplayMemory ByteSize `yaml:"replay_memory"`
}

// Connect says how the agent reaches the local server.
type Connect struct {
	Socket       string `yaml:"socket"`
	Address      string `yaml:"address"` // host:port
	User         string `yaml:"user"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
}

// Tools overrides the paths of the external tools.
type Tools struct {
	Mariabackup string `yaml:"mariabackup"`
	Mbstream    string `yaml:"mbstream"`
	Xtrabackup  string `yaml:"xtrabackup"`
	Xbstream    string `yaml:"xbstream"`
	Mariadbd    string `yaml:"mariadbd"`
	// Mysqld is MySQL's server binary: it starts restored MySQL backups
	// and the replay server of a MySQL archive, and reads a clone
	// backup's consistent point ("" = mysqld on PATH). Mysqlbinlog and
	// Mysql are the client replay method's tools for MySQL. Which set a
	// restore or replay uses is the flavor the manifest or archive recorded.
	Mysqld      string `yaml:"mysqld"`
	Mysqlbinlog string `yaml:"mysqlbinlog"`
	Mysql       string `yaml:"mysql"`
}

// Load reads and validates the config at path; an empty path means
// $STRATA_CONFIG, then ./strata.yaml.
func Load(path string) (*Config, error) {
	if path == "" {
		path = os.Getenv(EnvConfig)
	}
	if path == "" {
		path = "strata.yaml"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("config file %s not found: pass --config FILE or set %s", path, EnvConfig)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse decodes YAML, applies defaults and validates. Unknown keys are errors.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := oneDocument(dec); err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	c.applyTracingDefaults()
	if c.Temporal.Address == "" {
		c.Temporal.Address = "127.0.0.1:7233"
	}
	if c.Temporal.Namespace == "" {
		c.Temporal.Namespace = "default"
	}
	if c.Temporal.TaskQueue == "" {
		c.Temporal.TaskQueue = DefaultTaskQueue
	}
	if c.Temporal.AgentStartTimeout == 0 {
		c.Temporal.AgentStartTimeout = Duration(5 * time.Minute)
	}
	if c.Temporal.HeartbeatTimeout == 0 {
		c.Temporal.HeartbeatTimeout = Duration(30 * time.Second)
	}
	if c.Storage.Type == "" {
		c.Storage.Type = "local"
	}
	if c.Agent.MaxConcurrentHeavy == 0 {
		c.Agent.MaxConcurrentHeavy = 1
	}
	c.Metrics.applyDefaults()
	d := &c.Defaults
	if d.Compression == "" {
		d.Compression = "zstd"
	}
	if d.ChunkSize == 0 {
		d.ChunkSize = 16 << 20
	}
	if d.Parallelism == 0 {
		d.Parallelism = 2
	}
	// UseMemory 0 (unset) is derived from the agent's host when a restore
	// prepares (physical.PrepareMemory).
	if d.BackupTimeout == 0 {
		d.BackupTimeout = Duration(24 * time.Hour)
	}
	if d.TableSumsMaxSize == 0 {
		d.TableSumsMaxSize = DefaultTableSumsMaxSize
	}
	if d.LogCopyInterval == 0 {
		d.LogCopyInterval = Duration(DefaultLogCopyInterval)
	}
	if d.Method == "" {
		d.Method = MethodAuto
	}
	if d.Logical.Threads == 0 {
		d.Logical.Threads = 2
	}
	if d.Logical.FileSize == 0 {
		d.Logical.FileSize = 32 << 20
	}
	d.Preflight.inherit(defaultPreflight)
	for i := range c.Instances {
		r := &c.Instances[i].Retention
		inherit(&r.KeepFull, c.Retention.KeepFull)
		inherit(&r.KeepDays, c.Retention.KeepDays)
		inherit(&r.KeepMin, c.Retention.KeepMin)
		inherit(&r.PartialGrace, c.Retention.PartialGrace)
		// r.PartialGrace == 0 is defaulted below, from the backup timeout.
		if c.Instances[i].Encryption.Enabled == nil {
			on := c.Encryption.Configured()
			c.Instances[i].Encryption.Enabled = &on
		}
		ar := &c.Instances[i].Archive
		if ar.FlushInterval == 0 {
			ar.FlushInterval = Duration(time.Second)
		}
		if ar.MaxSegmentSize == 0 {
			ar.MaxSegmentSize = 8 << 20
		}
		if ar.ReplicaServerID == 0 {
			h := fnv.New32a()
			_, _ = h.Write([]byte(c.Instances[i].ID))
			ar.ReplicaServerID = 4000000000 + h.Sum32()%100000000
		}
		b := &c.Instances[i].Backup
		// The level is the codec's: inherit it only with the codec.
		inherit(&b.Compression, d.Compression)
		if b.CompressionLevel == 0 && b.Compression == d.Compression {
			b.CompressionLevel = d.CompressionLevel
		}
		inherit(&b.ChunkSize, d.ChunkSize)
		inherit(&b.Parallelism, d.Parallelism)
		inherit(&b.UseMemory, d.UseMemory)
		inherit(&b.BackupTimeout, d.BackupTimeout)
		inherit(&b.MaxChainLength, d.MaxChainLength)
		b.Preflight.inherit(d.Preflight)
		inherit(&b.Throttle, d.Throttle)
		inherit(&b.TableSums, d.TableSums)
		inherit(&b.TableSumsMaxSize, d.TableSumsMaxSize)
		inherit(&b.LogCopyInterval, d.LogCopyInterval)
		inherit(&b.Method, d.Method)
		inherit(&b.CloneInstallPlugin, d.CloneInstallPlugin)
		inherit(&b.CloneDir, d.CloneDir)
		inherit(&b.Logical.Threads, d.Logical.Threads)
		inherit(&b.Logical.FileSize, d.Logical.FileSize)
		if b.Logical.Include == nil {
			b.Logical.Include = d.Logical.Include
		}
		if b.Logical.Exclude == nil {
			b.Logical.Exclude = d.Logical.Exclude
		}
		if hb := &c.Instances[i].Heartbeat; hb.Table != "" && hb.Every == 0 {
			hb.Every = Duration(time.Second)
		}
		mergeSchedule(&c.Instances[i].Schedule, c.Schedule)
		if r.PartialGrace == 0 {
			r.PartialGrace = Duration(c.defaultPartialGrace(&c.Instances[i]))
		}
	}
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Validate checks the config and names the offending key in its error.
func (c *Config) Validate() error {
	var errs []string
	bad := func(key, format string, a ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, a...))
	}
	if c.Temporal.HeartbeatTimeout < Duration(5*time.Second) {
		bad("temporal.heartbeat_timeout", "must be at least 5s (agents heartbeat every few seconds)")
	}
	if (c.Temporal.TLS.CertFile == "") != (c.Temporal.TLS.KeyFile == "") {
		bad("temporal.tls", "set both cert_file and key_file for mTLS, or neither")
	}
	switch c.Storage.Type {
	case "local":
		if c.Storage.Local.Root == "" {
			bad("storage.local.root", "required when storage.type is local (the repository directory)")
		}
	case "gcs":
		if c.Storage.GCS.Bucket == "" {
			bad("storage.gcs.bucket", "required when storage.type is gcs")
		}
	default:
		bad("storage.type", "%q is not a storage type; use local or gcs", c.Storage.Type)
	}
	c.Metrics.validate(bad)
	if c.Agent.MaxConcurrentHeavy < 0 || c.Agent.MaxConcurrentHeavy > maxConcurrent {
		bad("agent.max_concurrent", "%d is out of range (1-%d backups/restores at once per agent)", c.Agent.MaxConcurrentHeavy, maxConcurrent)
	}
	if c.Agent.BandwidthLimit < 0 {
		bad("agent.bandwidth_limit", "must not be negative (0 = no limit)")
	} else if c.Agent.BandwidthLimit > 0 && c.Agent.BandwidthLimit < 64<<10 {
		bad("agent.bandwidth_limit", "%s per second is too low to make progress; use at least 64KiB (0 = no limit)", c.Agent.BandwidthLimit)
	}
	c.validateLimits(bad)
	c.validateFleet(bad)
	c.validateTracing(bad)
	validateEncryption(&c.Encryption, bad)
	validateBackup("defaults", &c.Defaults, bad)
	validateRetention("retention", &c.Retention, bad)
	validateSchedule("schedule", &c.Schedule, nil, bad)
	if len(c.Instances) == 0 {
		bad("instances", "at least one instance is required")
	}
	seen := map[string]bool{}
	for i := range c.Instances {
		in := &c.Instances[i]
		key := fmt.Sprintf("instances[%d]", i)
		if in.ID != "" {
			key = fmt.Sprintf("instances[%d] (%s)", i, in.ID)
		}
		switch {
		case in.ID == "":
			bad(key+".id", "required")
		case !idRE.MatchString(in.ID):
			bad(key+".id", "%q must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", in.ID)
		case seen[in.ID]:
			bad(key+".id", "%q is used by two instances", in.ID)
		}
		seen[in.ID] = true
		if in.Host == "" {
			bad(key+".host", "required: the agent host that owns this instance (strata agent --host NAME)")
		} else if !idRE.MatchString(in.Host) {
			bad(key+".host", "%q must be letters, digits, '.', '_' or '-'", in.Host)
		}
		if in.Connect.Socket == "" && in.Connect.Address == "" {
			bad(key+".connect", "set socket or address (host:port)")
		}
		if in.Connect.User == "" {
			bad(key+".connect.user", "required")
		}
		if in.Connect.PasswordEnv != "" && in.Connect.PasswordFile != "" {
			bad(key+".connect", "set only one of password_env and password_file")
		}
		if in.Datadir == "" {
			bad(key+".datadir", "required: the server's data directory on its host")
		}
		validateBackup(key+".backup", &in.Backup, bad)
		validateRetention(key+".retention", &in.Retention, bad)
		validateSchedule(key+".schedule", &in.Schedule, &c.Schedule, bad)
		c.validatePartialGrace(key, in, bad)
		if hb := in.Heartbeat; hb.Table != "" {
			if err := checkSchemaTable(hb.Table); err != nil {
				bad(key+".heartbeat.table", "%v", err)
			}
			if hb.Every < Duration(10*time.Millisecond) {
				bad(key+".heartbeat.every", "must be at least 10ms (default 1s)")
			}
		}
		if in.Archive.FlushInterval < Duration(10*time.Millisecond) {
			bad(key+".archive.flush_interval", "must be at least 10ms")
		}
		if m := in.Archive.ReplayMethod; m != "" && m != "replica" && m != "client" {
			bad(key+".archive.replay_method", "%q: use replica or client", m)
		}
		if n := in.Archive.ReplayThreads; n < 0 || n > MaxReplayThreads {
			bad(key+".archive.replay_threads", "%d is out of range (0 for the default 4, up to %d)", n, MaxReplayThreads)
		}
		if m := in.Archive.ReplayMemory; m != 0 && (m < MinReplayMemory || m > maxUseMemory) {
			bad(key+".archive.replay_memory", "%s is out of range (%s to %s; 0 derives it from the host's memory)", m, ByteSize(MinReplayMemory), ByteSize(maxUseMemory))
		}
		if in.EncryptionEnabled() && !c.Encryption.Configured() {
			bad(key+".encryption.enabled", "true needs a key: set the top-level encryption.key_file or encryption.key_env")
		}
		if in.Archive.MaxSegmentSize < 64<<10 {
			bad(key+".archive.max_segment_size", "must be at least 64KiB")
		}
		if h := in.Drill.Host; h != "" && !idRE.MatchString(h) {
			bad(key+".drill.host", "%q must be letters, digits, '.', '_' or '-' (an agent's --host)", h)
		}
	}
	if h := c.Drill.Host; h != "" && !idRE.MatchString(h) {
		bad("drill.host", "%q must be letters, digits, '.', '_' or '-' (an agent's --host)", h)
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

func validateEncryption(e *Encryption, bad func(key, format string, a ...any)) {
	if e.KeyFile != "" && e.KeyEnv != "" {
		bad("encryption", "set only one of key_file and key_env")
	}
	if !e.Configured() && len(e.OldKeyFiles)+len(e.OldKeyEnvs) > 0 {
		bad("encryption", "old_key_files/old_key_envs need a current key: set key_file or key_env (the key new backups are encrypted with)")
	}
	for i, f := range e.OldKeyFiles {
		if f == "" {
			bad(fmt.Sprintf("encryption.old_key_files[%d]", i), "is empty")
		}
	}
	for i, v := range e.OldKeyEnvs {
		if v == "" {
			bad(fmt.Sprintf("encryption.old_key_envs[%d]", i), "is empty")
		}
	}
}

func validateRetention(key string, r *Retention, bad func(key, format string, a ...any)) {
	for name, v := range map[string]int{"keep_full": r.KeepFull, "keep_days": r.KeepDays, "keep_min": r.KeepMin} {
		if v < 0 {
			bad(key+"."+name, "%d must not be negative (0 = no limit)", v)
		}
	}
	if r.KeepDays > maxKeepDays {
		bad(key+".keep_days", "%d is too large (at most %d days, 100 years; 0 = no limit by age)", r.KeepDays, maxKeepDays)
	}
	if r.PartialGrace < 0 {
		bad(key+".partial_grace", "must not be negative")
	}
}

// maxKeepDays bounds retention.keep_days (retention.MaxKeepDays).
const maxKeepDays = 36500

func validateBackup(key string, b *Backup, bad func(key, format string, a ...any)) {
	switch b.Compression {
	case "zstd", "lz4", "s2", "gzip", "none":
	default:
		bad(key+".compression", "%q is not supported; use zstd, lz4, s2, gzip or none", b.Compression)
	}
	maxLevel := map[string]int{"zstd": 19, "lz4": 10, "gzip": 9, "s2": 3, "none": 0}[b.Compression]
	if b.CompressionLevel < 0 || b.CompressionLevel > maxLevel {
		bad(key+".compression_level", "%d is out of range for %s (0 = codec default; zstd 1-19, lz4 1-10, gzip 1-9, s2 1-3, none 0)", b.CompressionLevel, b.Compression)
	}
	if b.ChunkSize < 64<<10 || b.ChunkSize > 1<<30 {
		bad(key+".chunk_size", "%s is out of range (64KiB to 1GiB)", b.ChunkSize)
	}
	if b.MaxChainLength < 0 {
		bad(key+".max_chain_length", "%d must not be negative (0 = no limit)", b.MaxChainLength)
	}
	if b.Throttle < 0 {
		bad(key+".throttle", "must not be negative (0 = no limit)")
	} else if b.Throttle > 0 && b.Throttle < 64<<10 {
		bad(key+".throttle", "%s per second is too low to make progress; use at least 64KiB (0 = no limit)", b.Throttle)
	}
	if b.Parallelism < 1 || b.Parallelism > 256 {
		bad(key+".parallelism", "%d is out of range (1-256)", b.Parallelism)
	}
	if b.Logical.Threads < 1 || b.Logical.Threads > 64 {
		bad(key+".logical.threads", "%d is out of range (1-64)", b.Logical.Threads)
	}
	if b.Logical.FileSize < 1<<20 || b.Logical.FileSize > 1<<30 {
		bad(key+".logical.file_size", "%s is out of range (1MiB-1GiB)", b.Logical.FileSize)
	}
	for _, pat := range append(append([]string(nil), b.Logical.Include...), b.Logical.Exclude...) {
		if err := logical.CheckFilter([]string{pat}); err != nil {
			bad(key+".logical", "%v", err)
		}
	}
	validatePreflight(key, &b.Preflight, bad)
	if b.TableSumsMaxSize < 0 {
		bad(key+".table_sums_max_size", "must not be negative")
	}
	if v := b.LogCopyInterval.Std(); v != 0 && (v < time.Millisecond || v > 10*time.Second || v%time.Millisecond != 0) {
		bad(key+".log_copy_interval", "%s is out of range: give whole milliseconds from 1ms to 10s (default 100ms)", v)
	}
	switch b.Method {
	case MethodAuto, MethodMariabackup, MethodXtrabackup, MethodClone:
	default:
		bad(key+".method", "%q is not a backup method; use auto (the default), mariabackup, xtrabackup or clone", b.Method)
	}
	if b.CloneDir != "" && !filepath.IsAbs(b.CloneDir) {
		bad(key+".clone_dir", "%q must be an absolute path (a directory on the datadir's filesystem)", b.CloneDir)
	}
}

// checkSchemaTable checks a "schema.table" name: two non-empty parts, no
// further '.', no backtick or NUL.
func checkSchemaTable(s string) error {
	schema, table, ok := strings.Cut(s, ".")
	if !ok || schema == "" || table == "" || strings.Contains(table, ".") || strings.ContainsAny(s, "`\x00") {
		return fmt.Errorf("%q is not schema.table (e.g. strata.heartbeat)", s)
	}
	return nil
}

// Instance returns the instance with the given id.
func (c *Config) Instance(id string) (*Instance, error) {
	for i := range c.Instances {
		if c.Instances[i].ID == id {
			return &c.Instances[i], nil
		}
	}
	ids := make([]string, 0, len(c.Instances))
	for _, in := range c.Instances {
		ids = append(ids, in.ID)
	}
	return nil, fmt.Errorf("unknown instance %q: configured instances are %s", id, strings.Join(ids, ", "))
}

// Password resolves the instance's password from its environment variable or
// file. It is called only by the agent that owns the instance.
func (in *Instance) Password() (string, error) {
	switch {
	case in.Connect.PasswordEnv != "":
		v, ok := os.LookupEnv(in.Connect.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("instance %s: environment variable %s (connect.password_env) is not set on this agent", in.ID, in.Connect.PasswordEnv)
		}
		return v, nil
	case in.Connect.PasswordFile != "":
		b, err := os.ReadFile(in.Connect.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("instance %s: read connect.password_file: %w", in.ID, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}
