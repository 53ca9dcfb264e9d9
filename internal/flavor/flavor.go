// Package flavor names the kinds of server Strata backs up, MariaDB and
// MySQL, with their version. The agent detects the flavor once, from the
// server, before a backup or an archive run; the manifest and the archive
// record it, and restore, replay and point-in-time planning read it from
// there, never from a tool's name or a GTID's shape.
package flavor

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Name is the kind of server: MariaDB or MySQL (Percona Server is a MySQL).
type Name string

// The flavors.
const (
	MariaDB Name = "mariadb"
	MySQL   Name = "mysql"
)

// ParseName parses a recorded flavor name. An empty name is an error: a
// record without one cannot say how to restore it.
func ParseName(s string) (Name, error) {
	switch n := Name(strings.ToLower(strings.TrimSpace(s))); n {
	case MariaDB, MySQL:
		return n, nil
	case "":
		return "", fmt.Errorf("no server flavor recorded (want %q or %q)", MariaDB, MySQL)
	default:
		return "", fmt.Errorf("server flavor %q is unknown (want %q or %q)", s, MariaDB, MySQL)
	}
}

// String returns the name.
func (n Name) String() string { return string(n) }

// GoMySQL returns go-mysql's name of the flavor (binlog streaming, GTID
// parsing).
func (n Name) GoMySQL() string {
	if n == MySQL {
		return mysql.MySQLFlavor
	}
	return mysql.MariaDBFlavor
}

// Flavor is a server's flavor and version.
type Flavor struct {
	Name    Name   `json:"name"`
	Version string `json:"version,omitempty"` // VERSION() as the server reports it
}

// Detect tells MariaDB from MySQL by VERSION() and @@version_comment.
func Detect(version, comment string) Flavor {
	n := MySQL
	if strings.Contains(strings.ToLower(version+" "+comment), "mariadb") {
		n = MariaDB
	}
	return Flavor{Name: n, Version: version}
}

// MajorMinor returns the version's first two numbers (0, 0 when the
// version does not start with them).
func (f Flavor) MajorMinor() (major, minor int) {
	_, _ = fmt.Sscanf(f.Version, "%d.%d", &major, &minor)
	return major, minor
}

// AtLeast reports whether the version is major.minor or later.
func (f Flavor) AtLeast(major, minor int) bool {
	ma, mi := f.MajorMinor()
	return ma > major || (ma == major && mi >= minor)
}

// String is "mysql 9.7.4" or "mariadb 10.11.19-MariaDB".
func (f Flavor) String() string {
	if f.Version == "" {
		return string(f.Name)
	}
	return string(f.Name) + " " + f.Version
}

// Words are the replication statements of a server, which MySQL 8.4
// renamed (SHOW MASTER STATUS is a syntax error on 8.4 and later).
type Words struct {
	BinlogStatus  string // SHOW BINARY LOG STATUS | SHOW MASTER STATUS
	ReplicaStatus string // SHOW REPLICA STATUS | SHOW SLAVE STATUS
	ChangeSource  string // CHANGE REPLICATION SOURCE TO | CHANGE MASTER TO
	StartReplica  string // START REPLICA | START SLAVE
	StopReplica   string // STOP REPLICA | STOP SLAVE
	ResetReplica  string // RESET REPLICA ALL | RESET SLAVE ALL
	ResetBinlogs  string // RESET BINARY LOGS AND GTIDS | RESET MASTER
}

// Words returns the replication statements this server understands.
func (f Flavor) Words() Words {
	switch {
	case f.Name == MySQL && f.AtLeast(8, 4):
		return Words{"SHOW BINARY LOG STATUS", "SHOW REPLICA STATUS", "CHANGE REPLICATION SOURCE TO",
			"START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "RESET BINARY LOGS AND GTIDS"}
	case f.Name == MySQL && f.AtLeast(8, 0):
		return Words{"SHOW MASTER STATUS", "SHOW REPLICA STATUS", "CHANGE REPLICATION SOURCE TO",
			"START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "RESET MASTER"}
	default:
		return Words{"SHOW MASTER STATUS", "SHOW SLAVE STATUS", "CHANGE MASTER TO",
			"START SLAVE", "STOP SLAVE", "RESET SLAVE ALL", "RESET MASTER"}
	}
}
