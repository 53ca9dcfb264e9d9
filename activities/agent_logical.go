package activities

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logical"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/restore"
	"github.com/strata-backup/strata/internal/server"
)

// logicalBackup dumps the instance with Strata's logical dump
// (internal/logical): its files go one after the other, through upload, as
// the backup's stream, and the index of the files is returned for the
// manifest. It is described as a backup tool's outcome is.
func (a *Agent) logicalBackup(ctx context.Context, in *config.Instance, ep mysqlx.Endpoint, hb *heartbeater, log *zap.Logger, upload func(io.Reader) error) (*physical.BackupOutcome, *logical.Index, error) {
	db, err := mysqlx.Open(ctx, ep)
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	lc := in.Backup.Logical
	db.SetMaxOpenConns(lc.Threads + 2)
	db.SetMaxIdleConns(lc.Threads + 2)

	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		err := upload(pr)
		if err == nil {
			err = errUploadEnded
		}
		pr.CloseWithError(err) // the dump's next write fails with it
		uploaded <- err
	}()
	started := time.Now()
	res, err := logical.Dump(ctx, db, &logical.StreamSink{W: pw}, logical.DumpOptions{
		Parallelism: lc.Threads,
		FileSize:    int64(lc.FileSize),
		Include:     lc.Include,
		Exclude:     lc.Exclude,
	})
	pw.CloseWithError(err) // nil: the upload reads to EOF
	upErr := <-uploaded
	if err != nil {
		if upErr != nil && !errors.Is(upErr, errUploadEnded) && errors.Is(err, upErr) {
			return nil, nil, upErr // the upload failed first: the dump's writes failed with its error
		}
		return nil, nil, classifyDump(err)
	}
	if upErr != nil && !errors.Is(upErr, errUploadEnded) {
		return nil, nil, upErr
	}
	log.Info("logical dump complete", zap.Int("files", len(res.Index.Files)), zap.Int64("rows", res.Rows),
		zap.Duration("lock", res.LockDuration), zap.String("gtid", res.GTIDSet))
	return &physical.BackupOutcome{
		Info: physical.Info{ToolName: manifest.ToolLogical, ToolVersion: fmt.Sprintf("format %d", logical.FormatVersion),
			ServerVersion: res.Flavor.Version, BinlogFile: res.BinlogFile, BinlogPos: res.BinlogPos, GTID: res.GTIDSet},
		CommitsBlocked: res.LockDuration,
		ConsistentAt:   res.ConsistentAt,
		StartTime:      started,
		EndTime:        time.Now(),
	}, &res.Index, nil
}

// errUploadEnded is what the dump's writes fail with after the upload
// returned without error: only after the dump closed the stream.
var errUploadEnded = errors.New("the upload ended before the dump")

// classifyDump types the errors of a dump that say what to fix: a missing
// privilege (FLUSH TABLES WITH READ LOCK needs RELOAD, SHOW CREATE USER
// and the grants need SELECT on mysql) is a configuration error; anything
// else (a lock wait timeout, a table changed by DDL) is retried with a new
// snapshot.
func classifyDump(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1044, 1045, 1142, 1143, 1227, 1370:
			return fail(ErrConfig, "logical dump: %v: the backup account needs RELOAD, LOCK TABLES, SELECT, SHOW VIEW, EVENT, TRIGGER and PROCESS, and SELECT on the mysql schema for the accounts", err)
		}
	}
	return classify(err)
}

// restoreLogical restores a logical backup into target as a new datadir,
// through the restore engine (target guard, staging, done marker): a new
// datadir is initialized in the staging dir's kept part, a private server
// (socket only, no grant tables) is started on it, the dump is loaded with
// the progress record of this workflow run (a retried attempt skips the
// files an interrupted one committed), the accounts last, and the backup's
// consistent point is recorded as a physical restore records it
// (mariadb_backup_binlog_info; MySQL's gtid_purged), so that a replay of
// the archive and a drill treat the datadir alike.
func (a *Agent) restoreLogical(ctx context.Context, p RestoreParams, m *manifest.Manifest, cipher *crypt.ChunkCipher, target string, owner restore.Owner, log *zap.Logger) (*RestoreStats, error) {
	fl, err := m.Flavor()
	if err != nil {
		return nil, fail(ErrCorruptBackup, "%v", err)
	}
	// The instance's settings, not its host: a drill restores on another one.
	in, err := a.cfg().Instance(p.Instance)
	if err != nil {
		return nil, fail(ErrUnknownInstance, "%v", err)
	}
	configured := in.Tools.Mariadbd
	if fl.Name == flavor.MySQL {
		configured = in.Tools.Mysqld
	}
	bin, err := server.FindBinaryFor(fl.Name, configured)
	if err != nil {
		return nil, fail(ErrToolMissing, "restore logical backup %s of %s: %v", m.BackupID, m.Instance, err)
	}
	opt, err := loadOptions(p, in.Backup.Logical.Threads, owner)
	if err != nil {
		return nil, err
	}
	hb := startHeartbeat(ctx, a.heartbeatEvery(), RestoreProgress{Phase: "loading", BackupID: m.BackupID})
	defer hb.close()
	stats := &RestoreStats{TargetDir: target, RawBytes: m.RawSize}
	var loadDir string
	t0 := time.Now()
	res, err := restore.Run(ctx, restore.Job{Target: target, Owner: owner, BackupID: p.BackupID, Chain: p.Chain, Space: restore.ChainSpace([]*manifest.Manifest{m})}, restore.Steps{
		Staged: func(keep string) error {
			// Kept across the attempts of this run, so that a retry loads on.
			loadDir = filepath.Join(keep, "logical-datadir")
			return os.MkdirAll(keep, 0o700)
		},
		Fetch: func(ctx context.Context, _ int, dir string) error {
			lr, err := a.loadNewDatadir(ctx, m, cipher, fl, bin, loadDir, opt, hb, log)
			if err != nil {
				return err
			}
			stats.Rows, stats.Files = lr.Rows, lr.Files
			// The move empties the load dir: a retry must start over.
			_ = os.Remove(loadDir + ".loaded")
			_ = os.Remove(loadDir + ".initialized")
			stats.DownloadedBytes = m.StoredSize
			stats.FetchSeconds = time.Since(t0).Seconds()
			return physical.MoveClone(loadDir, dir)
		},
		Prepare: func(context.Context, int, string, string) error { return nil },
		MoveBack: func(ctx context.Context, base, target string) error {
			t1 := time.Now()
			err := physical.MoveClone(base, target)
			stats.MoveBackSeconds = time.Since(t1).Seconds()
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	if res.AlreadyDone {
		return &RestoreStats{TargetDir: target}, nil
	}
	log.Info("logical restore complete", zap.Int64("rows", stats.Rows), zap.Int("files", stats.Files), zap.Float64("load_seconds", stats.FetchSeconds))
	return stats, nil
}

// loadOptions are the load options a restore's parameters give.
func loadOptions(p RestoreParams, threads int, owner restore.Owner) (logical.LoadOptions, error) {
	opt := logical.LoadOptions{Parallelism: threads, Include: p.Include, Exclude: p.Exclude, DeferIndexes: true,
		LoadID: owner.RunID}
	for _, pats := range [][]string{p.Include, p.Exclude} {
		if err := logical.CheckFilter(pats); err != nil {
			return opt, fail(ErrInvalidRequest, "%v", err)
		}
	}
	for _, r := range p.Rename {
		from, to, err := logical.ParseRename(r)
		if err != nil {
			return opt, fail(ErrInvalidRequest, "rename %q: %v", r, err)
		}
		if opt.Rename == nil {
			opt.Rename = map[string]string{}
		}
		opt.Rename[logical.QuoteName(from[0], from[1])] = logical.QuoteName(to[0], to[1])
	}
	return opt, nil
}

// loadNewDatadir loads m into a new datadir at dir (initialized unless an
// earlier attempt did) and records its consistent point there. The load
// runs as a private account (loadAccount, its password kept beside dir for
// the retries), because the accounts of the dump replace the new datadir's
// own; it is dropped at the end.
func (a *Agent) loadNewDatadir(ctx context.Context, m *manifest.Manifest, cipher *crypt.ChunkCipher, fl flavor.Flavor, bin, dir string, opt logical.LoadOptions, hb *heartbeater, log *zap.Logger) (*logical.LoadResult, error) {
	if err := server.KillStale(ctx, dir); err != nil {
		return nil, fmt.Errorf("stop the load server an earlier attempt left on %s: %w", dir, err)
	}
	initialized, pwFile, loaded := dir+".initialized", dir+".password", dir+".loaded"
	if _, err := os.Stat(loaded); err == nil && !isEmptyDir(dir) {
		// An earlier attempt loaded it, recorded its point and stopped its
		// server cleanly; only its report was lost.
		log.Info("the datadir an earlier attempt loaded is complete", zap.String("dir", dir))
		return &logical.LoadResult{}, nil
	}
	fresh := false
	if _, err := os.Stat(initialized); err != nil || isEmptyDir(dir) {
		for _, p := range []string{dir, pwFile} {
			if err := os.RemoveAll(p); err != nil {
				return nil, err
			}
		}
		hb.update(ctx, RestoreProgress{Phase: "initializing", BackupID: m.BackupID})
		if err := server.Initialize(ctx, fl.Name, bin, dir); err != nil {
			return nil, fail(ErrToolFailed, "%v", err)
		}
		fresh = true
	} else {
		log.Info("loading on into the datadir an earlier attempt initialized", zap.String("dir", dir))
	}
	st, err := server.Start(ctx, server.Options{Binary: bin, Flavor: fl.Name, Datadir: dir, User: "root", PrivateSocket: true,
		Extra: []string{"--skip-log-bin"}, Tick: func() { hb.update(ctx, RestoreProgress{Phase: "loading", BackupID: m.BackupID}) }})
	if err != nil {
		return nil, fmt.Errorf("start the load server: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_ = server.Stop(sctx, st)
		}
	}()
	if fresh {
		if err := prepareLoadAccount(ctx, st.Socket, pwFile); err != nil {
			return nil, err
		}
		if err := os.WriteFile(initialized, nil, 0o600); err != nil {
			return nil, err
		}
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return nil, fmt.Errorf("read the load account's password: %w", err)
	}
	db, err := mysqlx.Open(ctx, mysqlx.Endpoint{Socket: st.Socket, User: loadAccount, Password: string(pw)})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(opt.Parallelism + 2)
	opt.Users = true
	opt.Progress = func(pr logical.LoadProgress) {
		hb.update(ctx, RestoreProgress{Phase: "loading", BackupID: m.BackupID, RawBytes: pr.BytesDone})
	}
	lr, err := logical.Load(ctx, db, m.Logical, a.logicalSource(m, cipher), opt)
	if err != nil {
		return nil, loadError(m, err)
	}
	if err := recordConsistentPoint(ctx, db, dir, fl, m); err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, "DROP USER IF EXISTS "+sqlString(loadAccount)+"@'localhost'"); err != nil {
		return nil, fmt.Errorf("drop the load account: %w", err)
	}
	_ = db.Close()
	// A clean shutdown before the files move: a server still writing, or
	// killed, would leave them inconsistent.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stopped = true
	if err := server.Stop(sctx, st); err != nil {
		return nil, fmt.Errorf("stop the load server on %s: %w", dir, err)
	}
	if err := os.WriteFile(loaded, nil, 0o600); err != nil {
		return nil, err
	}
	return lr, nil
}

// isEmptyDir reports whether dir is missing or has no entries.
func isEmptyDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err != nil || len(entries) == 0
}

// loadAccount is the account a restore loads a logical backup into a new
// datadir with.
const loadAccount = "strata_load"

// prepareLoadAccount, on a new datadir's server, creates the load account
// with a random password (written to pwFile) and drops the datadir's own
// accounts (root@localhost and the like, but not the server's system
// accounts): the restored server gets the accounts the source had, as
// after a physical restore.
func prepareLoadAccount(ctx context.Context, socket, pwFile string) error {
	db, err := mysqlx.Open(ctx, mysqlx.Endpoint{Socket: socket, User: "root"})
	if err != nil {
		return fmt.Errorf("connect to the new datadir's server as root: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	pw := hex.EncodeToString(b)
	for _, q := range []string{
		fmt.Sprintf("CREATE USER %s@'localhost' IDENTIFIED BY %s", sqlString(loadAccount), sqlString(pw)),
		fmt.Sprintf("GRANT ALL ON *.* TO %s@'localhost' WITH GRANT OPTION", sqlString(loadAccount)),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create the load account: %w", err)
		}
	}
	// root's PROXY grants too, so that the load can grant PROXY as the
	// source's accounts have it.
	if err := copyProxyGrants(ctx, db); err != nil {
		return err
	}
	rows, err := db.QueryContext(ctx, "SELECT User, Host FROM mysql.user")
	if err != nil {
		return fmt.Errorf("list the accounts of the new datadir: %w", err)
	}
	type account struct{ user, host string }
	var drop []account
	for rows.Next() {
		var a account
		if err := rows.Scan(&a.user, &a.host); err != nil {
			rows.Close()
			return err
		}
		if !systemAccounts[a.user] && a.user != loadAccount {
			drop = append(drop, a)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, a := range drop {
		if _, err := db.ExecContext(ctx, "DROP USER "+sqlString(a.user)+"@"+sqlString(a.host)); err != nil {
			return fmt.Errorf("drop account %s@%s of the new datadir: %w", a.user, a.host, err)
		}
	}
	return os.WriteFile(pwFile, []byte(pw), 0o600)
}

// systemAccounts are the accounts a server creates for itself, which a
// dump leaves out and a load keeps.
var systemAccounts = map[string]bool{"mariadb.sys": true, "mysql.sys": true, "mysql.session": true, "mysql.infoschema": true, "PUBLIC": true}

// logicalSource reads the files of logical backup m from the repository.
func (a *Agent) logicalSource(m *manifest.Manifest, cipher *crypt.ChunkCipher) logical.Source {
	prefix := repo.BackupPrefix(m.Instance, m.BackupID)
	return logical.StreamSource{OpenRange: func(ctx context.Context, off, size int64) (io.ReadCloser, error) {
		return pipeline.OpenRange(ctx, a.Repo.Backend(), prefix, m.Chunks, m.Compression, off, size,
			pipeline.DownloadOptions{Parallelism: 2, Cipher: cipher, Limiter: a.Limiter})
	}}
}

// recordConsistentPoint records where the loaded data is in the source's
// history: MariaDB's mariadb_backup_binlog_info (file, position, GTID
// position), MySQL's gtid_purged (gtid_executed then holds the backup's set).
func recordConsistentPoint(ctx context.Context, db *sql.DB, dir string, fl flavor.Flavor, m *manifest.Manifest) error {
	if fl.Name == flavor.MySQL {
		if m.GTIDSet == "" {
			return nil
		}
		si, err := mysqlx.Inspect(ctx, db)
		if err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, si.Server().Words().ResetBinlogs); err != nil {
			return fmt.Errorf("reset the GTID state of the loaded server: %w", err)
		}
		if _, err := db.ExecContext(ctx, "SET GLOBAL gtid_purged = "+sqlString(m.GTIDSet)); err != nil {
			return fmt.Errorf("set gtid_purged of the loaded server to %s: %w", m.GTIDSet, err)
		}
		return nil
	}
	if m.BinlogFile == "" {
		return nil
	}
	line := fmt.Sprintf("%s\t%d\t%s\n", m.BinlogFile, m.BinlogPos, m.GTIDSet)
	return os.WriteFile(filepath.Join(dir, "mariadb_backup_binlog_info"), []byte(line), 0o640)
}

// loadError types a failed load: a table that exists in the target (and
// no Replace) is TableExists, a corrupt file a corrupt backup.
func loadError(m *manifest.Manifest, err error) error {
	var ee *logical.ExistsError
	if errors.As(err, &ee) {
		return fail(ErrTableExists, "load backup %s of %s: %v", m.BackupID, m.Instance, err)
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1044, 1045, 1142, 1143, 1227, 1370:
			return fail(ErrConfig, "load backup %s of %s: %v: the account needs CREATE, DROP, ALTER, INSERT, DELETE, CREATE VIEW, CREATE ROUTINE, TRIGGER, EVENT and SUPER (or SYSTEM_VARIABLES_ADMIN for sql_log_bin)", m.BackupID, m.Instance, err)
		case 1064, 1273, 1286, 1115:
			return fail(ErrInvalidRequest, "load backup %s of %s: %v: the target server does not understand the dump (another flavor or an older version)", m.BackupID, m.Instance, err)
		}
	}
	if errors.Is(err, logical.ErrCorrupt) || errors.Is(err, pipeline.ErrCorrupt) {
		return fail(ErrCorruptBackup, "backup %s of %s is corrupt: %v (run strata verify %s)", m.BackupID, m.Instance, err, m.Instance)
	}
	return fetchError(m, err)
}

// LoadParams asks the agent of instance Into to load logical backup
// BackupID of Instance into Into's running server.
type LoadParams struct {
	Instance string   `json:"instance"`
	BackupID string   `json:"backup_id"`
	Into     string   `json:"into"`
	Include  []string `json:"include,omitempty"`
	Exclude  []string `json:"exclude,omitempty"`
	Rename   []string `json:"rename,omitempty"`
	// Replace drops tables and objects of the same name in the target
	// first; without it an existing one fails the load before it changes
	// anything.
	Replace bool `json:"replace,omitempty"`
	// Users loads the accounts too, skipping those that exist.
	Users bool `json:"users,omitempty"`
	// Binlog writes the load to the target's binary log, so that its
	// replicas get it (default false: sql_log_bin=0).
	Binlog           bool `json:"binlog,omitempty"`
	AllowUnencrypted bool `json:"allow_unencrypted,omitempty"`
}

// LoadResult reports a load into a running server.
type LoadResult struct {
	Into         string   `json:"into"`
	Files        int      `json:"files"`
	SkippedFiles int      `json:"skipped_files"`
	Tables       int      `json:"tables"`
	Rows         int64    `json:"rows"`
	Seconds      float64  `json:"seconds"`
	Notes        []string `json:"notes,omitempty"`
}

// LoadLogical loads a logical backup into the running server of instance
// p.Into, with its filters and renames. The load's progress record (in the
// target server, keyed by this workflow run) lets a retried attempt skip
// every file an interrupted one committed, and never load a row twice.
func (a *Agent) LoadLogical(ctx context.Context, p LoadParams) (*LoadResult, error) {
	log := a.logger(ctx, zap.String("instance", p.Instance), zap.String("backup_id", p.BackupID), zap.String("into", p.Into))
	in, err := a.instance(p.Into)
	if err != nil {
		return nil, err
	}
	m, err := a.Repo.ReadManifest(ctx, p.Instance, p.BackupID)
	if err != nil {
		return nil, classify(err)
	}
	if m.Type != manifest.TypeLogical {
		return nil, fail(ErrInvalidRequest, "backup %s of %s is a %s backup: only a logical backup loads into a running server (for one table of a physical backup, use strata restore --table)", p.BackupID, p.Instance, m.Type)
	}
	ciphers, err := a.chainCiphers(ctx, []*manifest.Manifest{m}, p.AllowUnencrypted, log)
	if err != nil {
		return nil, err
	}
	wf := activity.GetInfo(ctx).WorkflowExecution
	opt, err := loadOptions(RestoreParams{Include: p.Include, Exclude: p.Exclude, Rename: p.Rename}, in.Backup.Logical.Threads, restore.Owner{WorkflowID: wf.ID, RunID: wf.RunID})
	if err != nil {
		return nil, err
	}
	opt.Replace, opt.Users, opt.Binlog = p.Replace, p.Users, p.Binlog
	db, _, _, err := openSource(ctx, in)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(opt.Parallelism + 2)
	hb := startHeartbeat(ctx, a.heartbeatEvery(), RestoreProgress{Phase: "loading", BackupID: m.BackupID})
	defer hb.close()
	opt.Progress = func(pr logical.LoadProgress) {
		hb.update(ctx, RestoreProgress{Phase: "loading", BackupID: m.BackupID, RawBytes: pr.BytesDone})
	}
	t0 := time.Now()
	lr, err := logical.Load(ctx, db, m.Logical, a.logicalSource(m, ciphers[0]), opt)
	if err != nil {
		return nil, asCancel(ctx, loadError(m, err))
	}
	res := &LoadResult{Into: p.Into, Files: lr.Files, SkippedFiles: lr.SkippedFiles, Tables: lr.Tables, Rows: lr.Rows,
		Seconds: time.Since(t0).Seconds(), Notes: lr.Notes}
	log.Info("logical load complete", zap.Int("files", res.Files), zap.Int("skipped_files", res.SkippedFiles), zap.Int64("rows", res.Rows))
	return res, nil
}

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// copyProxyGrants gives the load account root@localhost's PROXY grants.
func copyProxyGrants(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS FOR 'root'@'localhost'")
	if err != nil {
		return fmt.Errorf("read root's grants on the new datadir: %w", err)
	}
	var grants []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			rows.Close()
			return err
		}
		if strings.HasPrefix(g, "GRANT PROXY ON ") {
			grants = append(grants, g)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, g := range grants {
		i := strings.LastIndex(g, " TO ")
		if i < 0 {
			continue
		}
		grantee := g[i+len(" TO "):]
		rest := ""
		if j := strings.Index(grantee, " WITH "); j >= 0 {
			rest = grantee[j:]
		}
		q := g[:i] + " TO " + sqlString(loadAccount) + "@'localhost'" + rest
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("grant the load account PROXY (%s): %w", q, err)
		}
	}
	return nil
}
