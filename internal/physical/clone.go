package physical

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/server"
	"github.com/strata-backup/strata/internal/xbstream"
)

// ToolClone is the manifest's tool name of a clone backup.
const ToolClone = "clone"

// Errors of a clone backup's pre-flight; each message says what to fix.
var (
	ErrClonePlugin    = errors.New("clone plugin not available")
	ErrClonePrivilege = errors.New("missing privilege for clone")
	ErrCloneSpace     = errors.New("not enough free space for the clone")
	ErrCloneServer    = errors.New("server cannot be cloned")
)

// ErrCloneIncremental is the refusal of an incremental or differential
// backup by the clone method.
var ErrCloneIncremental = errors.New("clone backups are full only; chains for clone are full + binlog archive")

// CloneDirsMember is the stream member that lists the clone's empty
// directories (one a line, relative): the xbstream format holds files
// only, and a schema without tables is an empty directory the server
// needs. ExtractClone creates them and removes the member.
const CloneDirsMember = "strata-clone.dirs"

// CloneParams describe one clone backup of a running MySQL server.
type CloneParams struct {
	Endpoint mysqlx.Endpoint
	Datadir  string // the server's datadir (as configured; checked against the server)
	BackupID string
	// Parent is the directory the clone is written into (as
	// strata-clone-<backup id>); "" is the datadir's parent, so that the
	// clone is on the datadir's filesystem. The clone's directory must not
	// be hidden: InnoDB finds no tablespace in a datadir whose name starts
	// with a dot (checked on MySQL 9.7).
	Parent string
	// InstallPlugin has the backup install the clone plugin when it is
	// not loaded (backup.clone_install_plugin).
	InstallPlugin bool
	// Mysqld is the server binary that reads the clone's executed GTID
	// set ("" = mysqld on PATH).
	Mysqld string
	// FreeSpace returns the bytes free on the filesystem of path (nil =
	// statfs); tests inject it.
	FreeSpace func(path string) (int64, error)
	// Tick is called about every second while the clone runs and the
	// consistent point is read, with what is being done.
	Tick func(CloneProgress)
	// Log receives progress lines (optional).
	Log func(string)
}

// CloneProgress is what a clone backup reports while it runs.
type CloneProgress struct {
	Phase string // pre-flight, cloning, consistent point, streaming
	// Bytes and Estimate are the clone's copied and estimated bytes
	// (performance_schema.clone_progress), while cloning.
	Bytes, Estimate int64
}

// CloneOutcome is what a clone backup recorded.
type CloneOutcome struct {
	ServerVersion string
	// Lower is the binlog position read before the clone began: the
	// consistent point is at or after it.
	Lower gtid.Position
	// Position is the binlog position of the consistent point: where the
	// first transaction not in GTIDSet starts on the source.
	Position gtid.Position
	GTIDSet  gtid.Set
	// ConsistentAt is when the clone finished copying (agent clock).
	ConsistentAt time.Time
	StartTime    time.Time
	EndTime      time.Time
	// CloneSeconds is how long CLONE LOCAL DATA DIRECTORY ran.
	CloneSeconds float64
	// DataBytes is the data the pre-flight found to clone.
	DataBytes int64
	Files     int
}

// CloneDir is the scratch directory of backup id's clone under parent
// (not a hidden name: see CloneParams.Parent).
func CloneDir(parent, backupID string) string {
	return filepath.Join(parent, "strata-clone-"+backupID)
}

// cloneParent is the parent of the clone: the datadir's parent.
func cloneParent(p CloneParams) string {
	if p.Parent != "" {
		return filepath.Clean(p.Parent)
	}
	return filepath.Dir(filepath.Clean(p.Datadir))
}

var backupIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// CloneBackup takes a clone backup: pre-flight (plugin, privilege, space),
// CLONE LOCAL DATA DIRECTORY into a scratch directory beside the datadir,
// the consistent point read from the clone (its executed GTID set, mapped
// to the source's binlog position), and the directory streamed as an
// xbstream to consume, each file removed once streamed. The scratch
// directory is removed at the end, on error and on cancel; a cancelled
// clone is killed on the server.
func CloneBackup(ctx context.Context, p CloneParams, consume func(io.Reader) error) (*CloneOutcome, error) {
	if !backupIDRE.MatchString(p.BackupID) {
		return nil, fmt.Errorf("backup id %q cannot name a clone directory (letters, digits, _ . -)", p.BackupID)
	}
	tick := p.Tick
	if tick == nil {
		tick = func(CloneProgress) {}
	}
	logf := func(format string, a ...any) {
		if p.Log != nil {
			p.Log(fmt.Sprintf(format, a...))
		}
	}
	out := &CloneOutcome{StartTime: time.Now()}
	db, err := openNoReadTimeout(ctx, p.Endpoint)
	if err != nil {
		return nil, err
	}
	defer db.Close()

	tick(CloneProgress{Phase: "pre-flight"})
	f, err := cloneFlavor(ctx, db)
	if err != nil {
		return nil, err
	}
	out.ServerVersion = f.Version
	opts, err := fixedServerOptions(ctx, db)
	if err != nil {
		return nil, err
	}
	if err := ensureClonePlugin(ctx, db, p.InstallPlugin, logf); err != nil {
		return nil, err
	}
	if err := checkBackupAdmin(ctx, db); err != nil {
		return nil, err
	}
	dir := CloneDir(cloneParent(p), p.BackupID)
	if err := removeLeftover(ctx, db, dir, logf); err != nil {
		return nil, err
	}
	if err := markCloneOwner(dir); err != nil {
		return nil, fmt.Errorf("create files in %s (backup.clone_dir): %w", filepath.Dir(dir), err)
	}
	defer os.Remove(dir + cloneOwnerSuffix)
	data, err := cloneDataSize(ctx, db, p.Datadir)
	if err != nil {
		return nil, err
	}
	out.DataBytes = data
	if err := checkCloneSpace(filepath.Dir(dir), data, p.FreeSpace); err != nil {
		return nil, err
	}

	lower, err := binlogStatus(ctx, db, f)
	if err != nil {
		return nil, err
	}
	out.Lower = lower.pos
	defer os.RemoveAll(dir)

	tick(CloneProgress{Phase: "cloning"})
	t0 := time.Now()
	if err := runClone(ctx, db, dir, tick); err != nil {
		return nil, err
	}
	out.ConsistentAt = time.Now()
	out.CloneSeconds = time.Since(t0).Seconds()
	logf("clone of %d bytes of data took %.1fs", data, out.CloneSeconds)

	tick(CloneProgress{Phase: "consistent point"})
	set, err := cloneGTIDExecuted(ctx, dir, p.Mysqld, opts, func() { tick(CloneProgress{Phase: "consistent point"}) })
	if err != nil {
		return nil, err
	}
	if !set.Contains(lower.gtids) {
		return nil, fmt.Errorf("%w: the clone's executed GTID set %s lacks transactions the source had executed before the clone began (%s)", ErrCloneServer, set, lower.gtids)
	}
	pos, err := ConsistentPosition(ctx, db, lower.pos, set)
	if err != nil {
		return nil, err
	}
	out.GTIDSet, out.Position = set, pos
	logf("consistent point %s, GTID set %s", gtid.FormatPosition(pos), set)

	tick(CloneProgress{Phase: "streaming"})
	n, err := streamDir(ctx, dir, consume)
	if err != nil {
		return nil, err
	}
	out.Files = n
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("remove the clone directory %s: %w", dir, err)
	}
	out.EndTime = time.Now()
	return out, nil
}

// removeLeftover removes what an earlier attempt of this backup, killed,
// left of its clone in dir: a CLONE still running into it on the server
// (killed), the server that read its consistent point (killed), and the
// directory (CLONE refuses an existing one).
func removeLeftover(ctx context.Context, db *sql.DB, dir string, logf func(string, ...any)) error {
	for i := 0; ; i++ {
		var pid int64
		err := db.QueryRowContext(ctx, "SELECT PID FROM performance_schema.clone_status WHERE STATE = 'In Progress' AND DESTINATION = ?", dir).Scan(&pid)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return fmt.Errorf("check for a clone left running into %s: %w", dir, err)
		}
		if i == 0 {
			logf("killing the clone into %s that an earlier attempt left running (connection %d)", dir, pid)
			if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL QUERY %d", pid)); err != nil {
				return fmt.Errorf("kill the clone left running into %s (connection %d): %w", dir, pid, err)
			}
		}
		if i == 1200 {
			return fmt.Errorf("the clone left running into %s (connection %d) does not stop after KILL QUERY", dir, pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := server.KillStale(ctx, dir); err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		logf("removing the clone directory %s an earlier attempt left", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the clone directory %s an earlier attempt left: %w", dir, err)
	}
	return nil
}

// openNoReadTimeout connects to the endpoint without the driver's read
// timeout: CLONE answers only when it has copied everything.
func openNoReadTimeout(ctx context.Context, ep mysqlx.Endpoint) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(ep.DSN())
	if err != nil {
		return nil, err
	}
	cfg.ReadTimeout = 0
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(3)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, mysqlx.Classify(ep, err)
	}
	return db, nil
}

// cloneFlavor checks that the server is a MySQL that has the clone
// plugin (8.0.17 and later).
func cloneFlavor(ctx context.Context, db *sql.DB) (flavor.Flavor, error) {
	var version, comment string
	var logBin int
	if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@version_comment, @@log_bin").Scan(&version, &comment, &logBin); err != nil {
		return flavor.Flavor{}, fmt.Errorf("inspect server: %w", err)
	}
	f := flavor.Detect(version, comment)
	switch {
	case f.Name != flavor.MySQL:
		return f, fmt.Errorf("%w: the server is %s; the clone method backs up MySQL (use backup.method auto or mariabackup)", ErrCloneServer, f)
	case !f.AtLeast(8, 0) || (!f.AtLeast(8, 1) && patch(version) < 17):
		return f, fmt.Errorf("%w: MySQL %s has no clone plugin (8.0.17 and later have it); install xtrabackup and set backup.method: xtrabackup", ErrCloneServer, version)
	case logBin != 1:
		return f, fmt.Errorf("%w: the server runs without a binary log (log_bin is OFF): a clone's consistent point is a binlog position; enable log_bin and gtid_mode", ErrCloneServer)
	}
	var mode string
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_mode").Scan(&mode); err != nil {
		return f, fmt.Errorf("read gtid_mode: %w", err)
	}
	if mode != "ON" {
		return f, fmt.Errorf("%w: gtid_mode is %s: a clone's consistent point is found by GTID; set gtid_mode=ON and enforce_gtid_consistency=ON", ErrCloneServer, mode)
	}
	return f, nil
}

func patch(version string) int {
	var a, b, c int
	_, _ = fmt.Sscanf(version, "%d.%d.%d", &a, &b, &c)
	return c
}

// fixedServerOptions are the source's settings that a server on its
// clone must share to start at all: the page size and the system
// tablespace's files are fixed when the datadir is created, and the data
// dictionary records lower_case_table_names.
func fixedServerOptions(ctx context.Context, db *sql.DB) ([]string, error) {
	var pageSize, lowerCase int64
	var dataFiles string
	if err := db.QueryRowContext(ctx, "SELECT @@innodb_page_size, @@lower_case_table_names, @@innodb_data_file_path").
		Scan(&pageSize, &lowerCase, &dataFiles); err != nil {
		return nil, fmt.Errorf("read the server's InnoDB settings: %w", err)
	}
	return []string{fmt.Sprintf("--innodb-page-size=%d", pageSize), fmt.Sprintf("--lower-case-table-names=%d", lowerCase),
		"--innodb-data-file-path=" + dataFiles}, nil
}

// ensureClonePlugin checks that the clone plugin is active, installing it
// when allowed.
func ensureClonePlugin(ctx context.Context, db *sql.DB, install bool, logf func(string, ...any)) error {
	var status string
	err := db.QueryRowContext(ctx, "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'clone'").Scan(&status)
	switch {
	case errors.Is(err, sql.ErrNoRows) && install:
		if _, err := db.ExecContext(ctx, "INSTALL PLUGIN clone SONAME 'mysql_clone.so'"); err != nil {
			return fmt.Errorf("%w: INSTALL PLUGIN clone SONAME 'mysql_clone.so' failed: %v; install it by hand, or load it with plugin-load-add=mysql_clone.so in the server's config", ErrClonePlugin, err)
		}
		logf("installed the clone plugin")
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: the clone plugin is not installed on the server and backup.clone_install_plugin is false; run INSTALL PLUGIN clone SONAME 'mysql_clone.so' (or add plugin-load-add=mysql_clone.so to the server's config), or set backup.clone_install_plugin: true", ErrClonePlugin)
	case err != nil:
		return fmt.Errorf("check the clone plugin: %w", err)
	case status != "ACTIVE":
		return fmt.Errorf("%w: the clone plugin is %s, not ACTIVE; see the server's error log (clone=FORCE_PLUS_PERMANENT in its config keeps it loaded)", ErrClonePlugin, status)
	}
	return nil
}

// checkBackupAdmin checks that the user holds BACKUP_ADMIN (or ALL
// PRIVILEGES on *.*), which CLONE LOCAL needs.
func checkBackupAdmin(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return fmt.Errorf("read the user's grants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return err
		}
		u := strings.ToUpper(g)
		if strings.Contains(u, " ON *.* ") && (strings.Contains(u, "BACKUP_ADMIN") || strings.Contains(u, "ALL PRIVILEGES")) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var user string
	_ = db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user)
	return fmt.Errorf("%w: %s lacks BACKUP_ADMIN, which CLONE LOCAL DATA DIRECTORY needs; run GRANT BACKUP_ADMIN ON *.* TO %s", ErrClonePrivilege, user, quoteAccount(user))
}

func quoteAccount(u string) string {
	name, host, ok := strings.Cut(u, "@")
	if !ok {
		return u
	}
	return "'" + name + "'@'" + host + "'"
}

// cloneDataSize is what a clone of the server copies: the datadir's files
// but its binary and relay logs (which CLONE does not copy), or, when the
// agent cannot read the datadir, the InnoDB files' sizes the server reports.
func cloneDataSize(ctx context.Context, db *sql.DB, datadir string) (int64, error) {
	var binBase, relayBase sql.NullString
	_ = db.QueryRowContext(ctx, "SELECT @@log_bin_basename, @@relay_log_basename").Scan(&binBase, &relayBase)
	skip := func(path string) bool {
		for _, b := range []sql.NullString{binBase, relayBase} {
			if b.Valid && b.String != "" && strings.HasPrefix(path, b.String+".") {
				return true
			}
		}
		return false
	}
	var size int64
	err := filepath.WalkDir(datadir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || skip(path) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		size += fi.Size()
		return nil
	})
	if err == nil {
		return size, nil
	}
	var fromServer sql.NullInt64
	if qerr := db.QueryRowContext(ctx, "SELECT SUM(TOTAL_EXTENTS * EXTENT_SIZE) FROM information_schema.FILES WHERE ENGINE = 'InnoDB'").Scan(&fromServer); qerr != nil {
		return 0, fmt.Errorf("size the data to clone: walking %s failed (%v), and so did information_schema.FILES: %w", datadir, err, qerr)
	}
	var redo sql.NullInt64
	_ = db.QueryRowContext(ctx, "SELECT @@innodb_redo_log_capacity").Scan(&redo)
	return fromServer.Int64 + redo.Int64, nil
}

// cloneSpaceMargin is the free space a clone needs beyond the data: a
// twentieth of it, at least 64 MiB (the clone's redo and what the server
// writes while it is read).
func cloneSpaceMargin(data int64) int64 { return max(data/20, 64<<20) }

// checkCloneSpace checks that the filesystem of dir has room for the
// clone of data bytes.
func checkCloneSpace(dir string, data int64, free func(string) (int64, error)) error {
	if free == nil {
		free = statfsFree
	}
	avail, err := free(dir)
	if err != nil {
		return fmt.Errorf("check free space for the clone in %s: %w (set backup.clone_dir to an existing directory on the datadir's filesystem)", dir, err)
	}
	need := data + cloneSpaceMargin(data)
	if avail < need {
		return fmt.Errorf("%w: the clone of %d bytes of data (plus a margin: %d bytes) needs room in %s, which has %d bytes free; free space there, or set backup.clone_dir to a directory on a filesystem with room (the same filesystem as the datadir keeps the clone fast)",
			ErrCloneSpace, data, need, dir, avail)
	}
	return nil
}

func statfsFree(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// binlogPoint is a binlog position with the GTID set executed there.
type binlogPoint struct {
	pos   gtid.Position
	gtids gtid.Set
}

// binlogStatus reads the server's current binlog position and GTID set.
func binlogStatus(ctx context.Context, db *sql.DB, f flavor.Flavor) (binlogPoint, error) {
	rows, err := db.QueryContext(ctx, f.Words().BinlogStatus)
	if err != nil {
		return binlogPoint{}, fmt.Errorf("%s: %w", f.Words().BinlogStatus, err)
	}
	defer rows.Close()
	recs, err := scanRows(rows)
	if err != nil {
		return binlogPoint{}, err
	}
	if len(recs) != 1 || recs[0]["File"] == "" {
		return binlogPoint{}, fmt.Errorf("%w: %s returned no binlog position: enable log_bin", ErrCloneServer, f.Words().BinlogStatus)
	}
	var pos uint32
	if _, err := fmt.Sscan(recs[0]["Position"], &pos); err != nil {
		return binlogPoint{}, fmt.Errorf("%s: position %q: %w", f.Words().BinlogStatus, recs[0]["Position"], err)
	}
	set, err := gtid.Parse(flavor.MySQL, recs[0]["Executed_Gtid_Set"])
	if err != nil {
		return binlogPoint{}, err
	}
	return binlogPoint{pos: gtid.Position{Name: recs[0]["File"], Pos: pos}, gtids: set}, nil
}

// scanRows reads every row as column name → text.
func scanRows(rows *sql.Rows) ([]map[string]string, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		rec := make(map[string]string, len(cols))
		for i, c := range cols {
			rec[c] = vals[i].String
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// runClone runs CLONE LOCAL DATA DIRECTORY = dir on its own connection,
// ticking while it runs. When ctx ends, the clone is killed on the server
// (KILL QUERY) and waited for; the caller removes dir.
func runClone(ctx context.Context, db *sql.DB, dir string, tick func(CloneProgress)) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var id int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		// Not ctx: the driver would drop the connection and leave the
		// clone running on the server. A cancel kills the query instead.
		_, err := conn.ExecContext(context.WithoutCancel(ctx), "CLONE LOCAL DATA DIRECTORY = "+sqlString(dir))
		done <- err
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return cloneError(err, dir)
			}
			return nil
		case <-ctx.Done():
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_, kerr := db.ExecContext(kctx, fmt.Sprintf("KILL QUERY %d", id))
			cancel()
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				return fmt.Errorf("%w; the clone on the server did not stop within 2m of KILL QUERY %d (%v)", ctx.Err(), id, kerr)
			}
			return ctx.Err()
		case <-t.C:
			pr := CloneProgress{Phase: "cloning"}
			_ = db.QueryRowContext(ctx, "SELECT COALESCE(SUM(DATA), 0), COALESCE(SUM(ESTIMATE), 0) FROM performance_schema.clone_progress").Scan(&pr.Bytes, &pr.Estimate)
			tick(pr)
		}
	}
}

// cloneError says what to fix for a failed CLONE.
func cloneError(err error, dir string) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1227:
			return fmt.Errorf("%w: %s; GRANT BACKUP_ADMIN ON *.* to the backup user", ErrClonePrivilege, me.Message)
		case 1007, 3862, 1006: // exists, clone dir errors
			return fmt.Errorf("CLONE LOCAL DATA DIRECTORY = '%s' failed: %v; the server must be able to create that directory (set backup.clone_dir to a directory the server's OS user can write)", dir, err)
		}
	}
	return fmt.Errorf("CLONE LOCAL DATA DIRECTORY = '%s': %w", dir, err)
}

// sqlString quotes s as a MySQL string literal.
func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`).Replace(s) + "'"
}

// cloneGTIDExecuted starts a throwaway server on the cloned directory
// (private socket, no TCP, no binlog, no events, small buffer pool), reads
// its executed GTID set and stops it cleanly. The files it created at the
// top of the directory (its log, auto.cnf, certificates) are removed, so
// that the backup holds what the clone copied.
func cloneGTIDExecuted(ctx context.Context, dir, mysqld string, opts []string, tick func()) (gtid.Set, error) {
	before, err := topFiles(dir)
	if err != nil {
		return gtid.Set{}, err
	}
	bin, err := locate(mysqld, "mysqld", "mysql-server-core", "tools.mysqld")
	if err != nil {
		return gtid.Set{}, err
	}
	st, err := server.Start(ctx, server.Options{
		Binary: bin, Flavor: flavor.MySQL, Datadir: dir, PrivateSocket: true, User: "root", Tick: tick,
		Extra: append(opts, "--skip-grant-tables", "--skip-log-bin", "--event-scheduler=DISABLED", "--innodb-buffer-pool-size=64M", "--innodb-buffer-pool-dump-at-shutdown=OFF",
			"--innodb-buffer-pool-load-at-startup=OFF", "--server-id=1"),
	})
	if err != nil {
		return gtid.Set{}, fmt.Errorf("start a server on the clone to read its executed GTID set: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			_ = server.Stop(sctx, st)
			cancel()
		}
	}()
	db, err := sql.Open("mysql", mysqlx.Endpoint{Socket: st.Socket, User: "root"}.DSN())
	if err != nil {
		return gtid.Set{}, err
	}
	var s string
	err = db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed").Scan(&s)
	_ = db.Close()
	if err != nil {
		return gtid.Set{}, fmt.Errorf("read the clone's gtid_executed: %w", err)
	}
	set, err := gtid.Parse(flavor.MySQL, s)
	if err != nil {
		return gtid.Set{}, fmt.Errorf("the clone's gtid_executed: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	stopped = true
	if err := server.Stop(sctx, st); err != nil {
		return gtid.Set{}, fmt.Errorf("stop the server on the clone: %w", err)
	}
	if ctx.Err() != nil {
		return gtid.Set{}, ctx.Err()
	}
	after, err := topFiles(dir)
	if err != nil {
		return gtid.Set{}, err
	}
	for name := range after {
		if !before[name] {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return gtid.Set{}, err
			}
		}
	}
	return set, nil
}

// topFiles returns the names of the regular files at the top of dir.
func topFiles(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the clone directory: %w", err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if e.Type().IsRegular() {
			out[e.Name()] = true
		}
	}
	return out, nil
}

// gtidNextRE finds the GTID in a Gtid event's Info:
// SET @@SESSION.GTID_NEXT= 'uuid:N'.
var gtidNextRE = regexp.MustCompile(`GTID_NEXT\s*=\s*'([^']+)'`)

// ConsistentPosition maps an executed GTID set to the source's binlog
// position: the start of the first transaction after lower whose GTID is
// not in set, or, when every transaction after lower is in it, the end of
// the last event read. It walks SHOW BINLOG EVENTS from lower over the
// files that follow it.
func ConsistentPosition(ctx context.Context, db *sql.DB, lower gtid.Position, set gtid.Set) (gtid.Position, error) {
	files, err := binlogFiles(ctx, db)
	if err != nil {
		return gtid.Position{}, err
	}
	i := sort.SearchStrings(files, lower.Name)
	if i == len(files) || files[i] != lower.Name {
		return gtid.Position{}, fmt.Errorf("binlog %s (the position before the clone) is no longer on the server: was it purged during the backup?", lower.Name)
	}
	end := lower
	for ; i < len(files); i++ {
		from := uint32(4)
		if files[i] == lower.Name {
			from = lower.Pos
		}
		for {
			rows, err := db.QueryContext(ctx, fmt.Sprintf("SHOW BINLOG EVENTS IN %s FROM %d LIMIT 1000", sqlString(files[i]), from))
			if err != nil {
				return gtid.Position{}, fmt.Errorf("SHOW BINLOG EVENTS IN '%s' FROM %d: %w", files[i], from, err)
			}
			recs, err := scanRows(rows)
			rows.Close()
			if err != nil {
				return gtid.Position{}, err
			}
			for _, r := range recs {
				var pos, endPos uint32
				if _, err := fmt.Sscan(r["Pos"], &pos); err != nil {
					return gtid.Position{}, fmt.Errorf("SHOW BINLOG EVENTS: Pos %q: %w", r["Pos"], err)
				}
				if _, err := fmt.Sscan(r["End_log_pos"], &endPos); err != nil {
					return gtid.Position{}, fmt.Errorf("SHOW BINLOG EVENTS: End_log_pos %q: %w", r["End_log_pos"], err)
				}
				if t := r["Event_type"]; t == "Gtid" || t == "Gtid_tagged_log" {
					m := gtidNextRE.FindStringSubmatch(r["Info"])
					if m == nil {
						return gtid.Position{}, fmt.Errorf("the Gtid event at %s:%d names no GTID (%q)", files[i], pos, r["Info"])
					}
					in, err := set.ContainsGTID(m[1])
					if err != nil {
						return gtid.Position{}, fmt.Errorf("the Gtid event at %s:%d: %w", files[i], pos, err)
					}
					if !in {
						return gtid.Position{Name: files[i], Pos: pos}, nil
					}
				}
				end = gtid.Position{Name: files[i], Pos: endPos}
				from = endPos
			}
			if len(recs) < 1000 {
				break
			}
		}
	}
	return end, nil
}

// binlogFiles lists the server's binlogs in order.
func binlogFiles(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
	}
	defer rows.Close()
	recs, err := scanRows(rows)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r["Log_name"])
	}
	// Names share a base and a zero-padded sequence number: they sort as
	// they were written.
	sort.Strings(out)
	return out, nil
}

// streamDir writes every file of dir to consume as an xbstream (the list
// of empty directories first, as CloneDirsMember), removing each file once
// its bytes are handed over. It returns the number of files.
func streamDir(ctx context.Context, dir string, consume func(io.Reader) error) (int, error) {
	var files, empty []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel == "." {
				return nil
			}
			entries, err := os.ReadDir(path)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				empty = append(empty, filepath.ToSlash(rel))
			}
		case d.Type().IsRegular():
			files = append(files, filepath.ToSlash(rel))
		default:
			return fmt.Errorf("the clone holds %s, which is neither a file nor a directory", rel)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read the clone directory (the agent must run as the server's OS user, or root, to read and remove it): %w", err)
	}
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := func() error {
			x := xbstream.NewWriter(pw)
			list := strings.Join(empty, "\n")
			if list != "" {
				list += "\n"
			}
			if _, err := x.WriteFile(CloneDirsMember, strings.NewReader(list)); err != nil {
				return err
			}
			for _, name := range files {
				if err := ctx.Err(); err != nil {
					return err
				}
				p := filepath.Join(dir, filepath.FromSlash(name))
				f, err := os.Open(p)
				if err != nil {
					return fmt.Errorf("read the clone's %s (the agent must run as the server's OS user, or root): %w", name, err)
				}
				_, err = x.WriteFile(name, f)
				f.Close()
				if err != nil {
					return err
				}
				// The consumer has taken every byte of it (the pipe is
				// synchronous): the local copy is no longer needed.
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("remove the streamed %s: %w", name, err)
				}
			}
			return nil
		}()
		_ = pw.CloseWithError(err)
		werr <- err
	}()
	cerr := consume(pr)
	_ = pr.CloseWithError(errors.Join(cerr, errors.New("the stream's consumer stopped")))
	err = <-werr
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case cerr != nil:
		return 0, cerr
	case err != nil:
		return 0, err
	}
	return len(files), nil
}

// ExtractClone extracts a clone backup's stream from r into dir with the
// built-in extractor, then creates the empty directories the stream lists
// (CloneDirsMember) and removes the list.
func ExtractClone(r io.Reader, dir string) (xbstream.ExtractStats, error) {
	st, err := xbstream.Extract(r, dir)
	if err != nil {
		return st, err
	}
	list := filepath.Join(dir, CloneDirsMember)
	b, err := os.ReadFile(list)
	if err != nil {
		return st, fmt.Errorf("%w: the clone stream has no %s member", xbstream.ErrCorrupt, CloneDirsMember)
	}
	for _, rel := range strings.Split(string(b), "\n") {
		if rel == "" {
			continue
		}
		if !filepath.IsLocal(rel) || strings.ContainsAny(rel, "\\\x00") {
			return st, fmt.Errorf("%w: %s names %q, which is not a path inside the backup", xbstream.ErrCorrupt, CloneDirsMember, rel)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(rel)), 0o750); err != nil {
			return st, err
		}
	}
	return st, os.Remove(list)
}

// CloneExtractor starts ExtractClone into dir on what is written to the
// returned writer; closing the writer ends the stream, and wait returns
// the extraction's result. An extraction that fails makes further writes
// fail with its error.
func CloneExtractor(dir string) (w io.WriteCloser, wait func() error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := ExtractClone(pr, dir) // reads to the end of the stream
		_ = pr.CloseWithError(err)
		done <- err
	}()
	return pw, func() error { return <-done }
}

// MoveClone moves an extracted clone backup from dir into the empty (or
// missing) datadir target, entry by entry (both on one filesystem: the restore
// stages beside its target). A clone needs no prepare step: the server
// starts on it as it is.
func MoveClone(dir, target string) error {
	// Like the tools' --move-back, create a missing target.
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create the target %s: %w", target, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(target, e.Name())); err != nil {
			return fmt.Errorf("move the restored %s into %s: %w", e.Name(), target, err)
		}
	}
	return nil
}
