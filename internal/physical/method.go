package physical

import (
	"errors"
	"fmt"

	"github.com/strata-backup/strata/internal/flavor"
)

// The physical backup methods (backup.method).
const (
	MethodAuto        = "auto"
	MethodMariabackup = "mariabackup"
	MethodXtrabackup  = "xtrabackup"
	MethodClone       = "clone"
)

// ErrMethod is wrapped when the configured backup method does not fit the
// server's flavor.
var ErrMethod = errors.New("backup method does not fit the server")

// Method is the physical method chosen for one backup: a streaming tool
// (mariabackup, xtrabackup) or MySQL's clone plugin (Tool nil).
type Method struct {
	Name string
	Tool *Tool // nil for clone
}

// ChooseMethod picks the physical method for a server of flavor f and the
// configured method (backup.method; "" is auto). Auto means mariabackup
// for MariaDB, and for MySQL xtrabackup when it is installed, else clone
// (a tools.xtrabackup or tools.xbstream path that is set but wrong is an
// error, not a fallback).
// A method that does not fit the flavor is an ErrMethod error naming the
// fix; an explicitly chosen tool that is missing is ErrToolMissing.
func ChooseMethod(f flavor.Name, method string, p Paths) (*Method, error) {
	if method == "" {
		method = MethodAuto
	}
	switch f {
	case flavor.MariaDB:
		switch method {
		case MethodAuto, MethodMariabackup:
			t, err := ForFlavor(flavor.MariaDB, p)
			if err != nil {
				return nil, err
			}
			return &Method{Name: MethodMariabackup, Tool: t}, nil
		case MethodXtrabackup, MethodClone:
			return nil, fmt.Errorf("%w: the server is MariaDB, but backup.method is %s, a MySQL method; set backup.method to auto or mariabackup", ErrMethod, method)
		}
	case flavor.MySQL:
		switch method {
		case MethodMariabackup:
			return nil, fmt.Errorf("%w: the server is MySQL, but backup.method is mariabackup, which backs up MariaDB only; set backup.method to auto, xtrabackup or clone", ErrMethod)
		case MethodXtrabackup:
			t, err := ForFlavor(flavor.MySQL, p)
			if err != nil {
				return nil, err
			}
			return &Method{Name: MethodXtrabackup, Tool: t}, nil
		case MethodClone:
			return &Method{Name: MethodClone}, nil
		case MethodAuto:
			t, err := ForFlavor(flavor.MySQL, p)
			if errors.Is(err, ErrToolMissing) && p.Xtrabackup == "" && p.Xbstream == "" {
				// Not installed, and not configured: a configured path
				// that is wrong is an error to fix, not a reason to
				// switch methods.
				return &Method{Name: MethodClone}, nil
			}
			if err != nil {
				return nil, err
			}
			return &Method{Name: MethodXtrabackup, Tool: t}, nil
		}
	default:
		return nil, fmt.Errorf("%w: unknown server flavor %q", ErrMethod, f)
	}
	return nil, fmt.Errorf("%w: backup.method %q is not one of auto, mariabackup, xtrabackup, clone", ErrMethod, method)
}
