package mysqlx

import (
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"

	"github.com/strata-backup/strata/internal/flavor"
)

func TestServerInfoServer(t *testing.T) {
	si := &ServerInfo{Flavor: flavor.MySQL, Version: "9.7.4"}
	assert.Equal(t, flavor.Flavor{Name: flavor.MySQL, Version: "9.7.4"}, si.Server())
	assert.Equal(t, "SHOW BINARY LOG STATUS", si.Server().Words().BinlogStatus)
}

func TestClassify(t *testing.T) {
	ep := Endpoint{Address: "127.0.0.1:1", User: "u", Password: "pw-never-shown"}
	cases := []struct {
		err  error
		kind Kind
	}{
		{&mysql.MySQLError{Number: 1045, Message: "Access denied"}, KindAuth},
		{&mysql.MySQLError{Number: 1227, Message: "need RELOAD"}, KindAuth},
		{&mysql.MySQLError{Number: 1205, Message: "lock wait"}, KindTransient},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, KindUnreachable},
		{fmt.Errorf("dial unix: %w", syscall.ENOENT), KindUnreachable},
		{fmt.Errorf("i/o timeout"), KindTransient},
	}
	for _, c := range cases {
		err := Classify(ep, c.err)
		var ce *ConnError
		if assert.ErrorAs(t, err, &ce) {
			assert.Equal(t, c.kind, ce.Kind, c.err.Error())
			assert.NotContains(t, ce.Error(), "pw-never-shown")
		}
	}
}

func TestDSNKeepsPasswordOutOfString(t *testing.T) {
	ep := Endpoint{Socket: "/run/s.sock", User: "root", Password: "secret"}
	assert.Equal(t, "root@unix(/run/s.sock)", ep.String())
	assert.Contains(t, ep.DSN(), "unix(/run/s.sock)")
}
