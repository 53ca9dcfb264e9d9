package physical

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/flavor"
)

func fakeTool(t *testing.T, name string) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	return p
}

// installed reports whether locate finds name outside PATH.
func installed(name string) bool {
	_, err := locate("", name, "", "")
	return err == nil
}

func TestChooseMethod(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // nothing installed but what the test names
	xtra := Paths{Xtrabackup: fakeTool(t, "xtrabackup"), Xbstream: fakeTool(t, "xbstream")}
	maria := Paths{Mariabackup: fakeTool(t, "mariabackup"), Mbstream: fakeTool(t, "mbstream")}

	for _, c := range []struct {
		name   string
		flavor flavor.Name
		method string
		paths  Paths
		want   string
		err    error
	}{
		{"mariadb auto", flavor.MariaDB, "", maria, MethodMariabackup, nil},
		{"mariadb explicit", flavor.MariaDB, MethodMariabackup, maria, MethodMariabackup, nil},
		{"mariadb clone", flavor.MariaDB, MethodClone, maria, "", ErrMethod},
		{"mariadb xtrabackup", flavor.MariaDB, MethodXtrabackup, xtra, "", ErrMethod},
		{"mysql auto with xtrabackup", flavor.MySQL, MethodAuto, xtra, MethodXtrabackup, nil},
		{"mysql auto without xtrabackup", flavor.MySQL, "", Paths{}, MethodClone, nil},
		{"mysql auto, xtrabackup path wrong", flavor.MySQL, MethodAuto, Paths{Xtrabackup: "/nonexistent/xtrabackup"}, "", ErrToolMissing},
		{"mysql clone even with xtrabackup", flavor.MySQL, MethodClone, xtra, MethodClone, nil},
		{"mysql xtrabackup missing", flavor.MySQL, MethodXtrabackup, Paths{}, "", ErrToolMissing},
		{"mysql mariabackup", flavor.MySQL, MethodMariabackup, maria, "", ErrMethod},
		{"unknown method", flavor.MySQL, "rsync", xtra, "", ErrMethod},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.flavor == flavor.MySQL && c.paths == (Paths{}) && installed("xtrabackup") {
				t.Skip("xtrabackup is installed on this host")
			}
			m, err := ChooseMethod(c.flavor, c.method, c.paths)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, m.Name)
			assert.Equal(t, c.want == MethodClone, m.Tool == nil)
		})
	}
	_, err := ChooseMethod(flavor.MySQL, MethodMariabackup, maria)
	assert.Contains(t, err.Error(), "set backup.method to auto, xtrabackup or clone")
	_, err = ChooseMethod(flavor.MariaDB, MethodClone, maria)
	assert.Contains(t, err.Error(), "set backup.method to auto or mariabackup")
}
