package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncryptionAbsentMeansUnencrypted(t *testing.T) {
	c, err := Parse([]byte(good))
	require.NoError(t, err)
	assert.False(t, c.Encryption.Configured())
	for _, in := range c.Instances {
		assert.False(t, in.EncryptionEnabled(), in.ID)
	}
	assert.Equal(t, ByteSize(0), c.Agent.BandwidthLimit, "no bandwidth limit by default")
}

func TestEncryptionAndBandwidthKeys(t *testing.T) {
	doc := strings.Replace(good, "instances:", `agent:
  bandwidth_limit: 50MiB
encryption:
  key_file: /etc/strata/kek
  old_key_files: [/etc/strata/kek.old]
  old_key_envs: [OLD_KEK]
instances:`, 1)
	doc = strings.Replace(doc, "    datadir: /data\n", "    datadir: /data\n    encryption: {enabled: false}\n", 1)
	c, err := Parse([]byte(doc))
	require.NoError(t, err)
	assert.Equal(t, ByteSize(50<<20), c.Agent.BandwidthLimit)
	assert.True(t, c.Encryption.Configured())
	assert.Equal(t, "/etc/strata/kek", c.Encryption.KeyFile)
	assert.Equal(t, []string{"/etc/strata/kek.old"}, c.Encryption.OldKeyFiles)
	assert.Equal(t, []string{"OLD_KEK"}, c.Encryption.OldKeyEnvs)
	db1, _ := c.Instance("db1")
	db2, _ := c.Instance("db2")
	assert.True(t, db1.EncryptionEnabled(), "instances inherit encryption")
	assert.False(t, db2.EncryptionEnabled(), "an instance can opt out")
}

func TestEncryptionValidation(t *testing.T) {
	for name, tc := range map[string]struct{ top, inst, want string }{
		"file and env": {top: "encryption: {key_file: /k, key_env: K}\n", want: "encryption: set only one of key_file and key_env"},
		"old only":     {top: "encryption: {old_key_files: [/k]}\n", want: "encryption: old_key_files/old_key_envs need a current key"},
		"empty old":    {top: "encryption: {key_env: K, old_key_envs: ['']}\n", want: "encryption.old_key_envs[0]: is empty"},
		"enabled without key": {inst: "    encryption: {enabled: true}\n",
			want: "instances[1] (db2).encryption.enabled: true needs a key"},
		"unknown key":    {top: "encryption: {keyfile: /k}\n", want: "field keyfile not found"},
		"bandwidth tiny": {top: "agent: {bandwidth_limit: 1KiB}\n", want: "agent.bandwidth_limit: 1KiB per second is too low"},
		"bandwidth bad":  {top: "agent: {bandwidth_limit: fast}\n", want: `"fast" is not a size`},
	} {
		t.Run(name, func(t *testing.T) {
			doc := strings.Replace(good, "instances:", tc.top+"instances:", 1)
			doc = strings.Replace(doc, "    datadir: /data\n", "    datadir: /data\n"+tc.inst, 1)
			_, err := Parse([]byte(doc))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
