package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackupMethodDefaultsInheritsAndIsValidated(t *testing.T) {
	c, err := Parse([]byte(`
storage: {local: {root: r}}
defaults: {clone_dir: /srv/scratch}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}
  - {id: b, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: {method: clone, clone_install_plugin: false, clone_dir: /var/lib/clones}}
  - {id: c, host: h, connect: {address: x:1, user: u}, datadir: /d, tools: {mysqld: /opt/mysql/bin/mysqld}, backup: {method: xtrabackup}}
`))
	require.NoError(t, err)
	a, b, cc := c.Instances[0].Backup, c.Instances[1].Backup, c.Instances[2].Backup
	assert.Equal(t, MethodAuto, a.Method, "default: auto")
	assert.True(t, a.CloneInstall(), "default: the plugin may be installed")
	assert.Equal(t, "/srv/scratch", a.CloneDir, "inherited from defaults")
	assert.Equal(t, MethodClone, b.Method)
	assert.False(t, b.CloneInstall())
	assert.Equal(t, "/var/lib/clones", b.CloneDir)
	assert.Equal(t, MethodXtrabackup, cc.Method)
	assert.Equal(t, "/opt/mysql/bin/mysqld", c.Instances[2].Tools.Mysqld)

	for _, bad := range []struct{ backup, want string }{
		{`{method: rsync}`, `instances[0] (a).backup.method: "rsync" is not a backup method; use auto (the default), mariabackup, xtrabackup or clone`},
		{`{method: Clone}`, `backup.method: "Clone" is not a backup method`},
		{`{clone_dir: scratch}`, `instances[0] (a).backup.clone_dir: "scratch" must be an absolute path`},
	} {
		_, err := Parse([]byte(`
storage: {local: {root: r}}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d, backup: ` + bad.backup + `}
`))
		require.Error(t, err, bad.backup)
		assert.Contains(t, err.Error(), bad.want)
	}
	_, err = Parse([]byte(`
storage: {local: {root: r}}
defaults: {method: none}
instances:
  - {id: a, host: h, connect: {address: x:1, user: u}, datadir: /d}
`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "defaults.method")
}
