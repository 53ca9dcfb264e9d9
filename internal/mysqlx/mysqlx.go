// Package mysqlx connects to a MySQL or MariaDB server on behalf of the agent:
// it detects the flavor and version that choose the backup tool, and turns
// connection failures into errors that say what to fix.
package mysqlx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/strata-backup/strata/internal/flavor"
)

// Endpoint is how to reach a server. Password is resolved by the agent and
// never leaves it.
type Endpoint struct {
	Socket   string
	Address  string // host:port
	User     string
	Password string
}

// Kind classifies a connection failure.
type Kind string

// Failure kinds.
const (
	KindAuth        Kind = "AuthFailed"        // wrong user or password: fix credentials
	KindUnreachable Kind = "ServerUnreachable" // nothing listening / no socket: fix address or start the server
	KindTransient   Kind = "Transient"         // anything else: worth a retry
)

// ConnError is a classified connection failure.
type ConnError struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *ConnError) Error() string { return e.Msg }
func (e *ConnError) Unwrap() error { return e.Err }

// String describes the endpoint for messages (never the password).
func (e Endpoint) String() string {
	if e.Socket != "" {
		return fmt.Sprintf("%s@unix(%s)", e.User, e.Socket)
	}
	return fmt.Sprintf("%s@tcp(%s)", e.User, e.Address)
}

// DSN returns a go-sql-driver DSN for the endpoint.
func (e Endpoint) DSN() string {
	c := mysql.NewConfig()
	c.User = e.User
	c.Passwd = e.Password
	if e.Socket != "" {
		c.Net, c.Addr = "unix", e.Socket
	} else {
		c.Net, c.Addr = "tcp", e.Address
	}
	c.Timeout = 10 * time.Second
	c.ReadTimeout = 5 * time.Minute
	c.ParseTime = true
	c.Params = map[string]string{"charset": "utf8mb4"}
	return c.FormatDSN()
}

// ServerInfo is what the agent learns about the server before a backup.
type ServerInfo struct {
	Flavor  flavor.Name // detected once, from VERSION() and @@version_comment
	Version string      // full VERSION()
	Major   int
	Minor   int
	Datadir string
	LogBin  bool
	GTIDPos string // MariaDB gtid_binlog_pos or MySQL gtid_executed
}

// Open connects and pings, classifying failures.
func Open(ctx context.Context, ep Endpoint) (*sql.DB, error) {
	db, err := sql.Open("mysql", ep.DSN())
	if err != nil {
		return nil, &ConnError{Kind: KindTransient, Msg: fmt.Sprintf("open %s: %v", ep, err), Err: err}
	}
	db.SetMaxOpenConns(2)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, Classify(ep, err)
	}
	return db, nil
}

// Classify turns a driver error into a ConnError that says what to fix.
func Classify(ep Endpoint, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045, 1698: // access denied
			return &ConnError{Kind: KindAuth, Err: err, Msg: fmt.Sprintf(
				"access denied for %s: check connect.user and the password in connect.password_env/password_file on this agent (%s)", ep, me.Message)}
		case 1044, 1227: // access denied to db / missing privilege
			return &ConnError{Kind: KindAuth, Err: err, Msg: fmt.Sprintf(
				"user of %s lacks a privilege Strata needs (grant RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR/REPLICATION CLIENT, and REPLICATION SLAVE for binlog archiving): %s", ep, me.Message)}
		}
		return &ConnError{Kind: KindTransient, Err: err, Msg: fmt.Sprintf("server %s: %v", ep, err)}
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || isNoSuchHost(err) {
		return &ConnError{Kind: KindUnreachable, Err: err, Msg: fmt.Sprintf(
			"cannot reach server %s: %v; check connect.address/connect.socket and that the server is running", ep, err)}
	}
	return &ConnError{Kind: KindTransient, Err: err, Msg: fmt.Sprintf("connect %s: %v", ep, err)}
}

func isNoSuchHost(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Inspect reads flavor, version, datadir, binlog and GTID state.
func Inspect(ctx context.Context, db *sql.DB) (*ServerInfo, error) {
	var version, comment, datadir string
	var logBin int
	if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@version_comment, @@datadir, @@log_bin").
		Scan(&version, &comment, &datadir, &logBin); err != nil {
		return nil, fmt.Errorf("inspect server: %w", err)
	}
	f := flavor.Detect(version, comment)
	si := &ServerInfo{Flavor: f.Name, Version: version, Datadir: datadir, LogBin: logBin == 1}
	si.Major, si.Minor = f.MajorMinor()
	q := "SELECT @@gtid_binlog_pos"
	if si.Flavor == flavor.MySQL {
		q = "SELECT @@gtid_executed"
	}
	var gtid sql.NullString
	if err := db.QueryRowContext(ctx, q).Scan(&gtid); err == nil {
		si.GTIDPos = gtid.String
	}
	return si, nil
}

// Server is the server's flavor and version, as the manifest and the
// archive record it.
func (si *ServerInfo) Server() flavor.Flavor {
	return flavor.Flavor{Name: si.Flavor, Version: si.Version}
}
