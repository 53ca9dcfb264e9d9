package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDrillHost(t *testing.T) {
	base := "storage: {local: {root: r}}\n"
	inst := `instances:
  - {id: db1, host: h1, connect: {address: "x:1", user: u}, datadir: /d}
  - {id: db2, host: h2, connect: {address: "x:1", user: u}, datadir: /d, drill: {host: box2}}
`
	c, err := Parse([]byte(base + inst))
	require.NoError(t, err)
	assert.Equal(t, "h1", c.DrillHost(&c.Instances[0]), "default: the instance's own host")
	assert.Equal(t, "box2", c.DrillHost(&c.Instances[1]))
	c, err = Parse([]byte(base + "drill: {host: box}\n" + inst))
	require.NoError(t, err)
	assert.Equal(t, "box", c.DrillHost(&c.Instances[0]), "the fleet's drill host")
	assert.Equal(t, "box2", c.DrillHost(&c.Instances[1]), "the instance's overrides it")

	_, err = Parse([]byte(base + "drill: {host: \"a b\"}\n" + inst))
	assert.ErrorContains(t, err, `drill.host: "a b" must be letters`)
	_, err = Parse([]byte(base + `instances:
  - {id: db1, host: h1, connect: {address: "x:1", user: u}, datadir: /d, drill: {host: "../x"}}
`))
	assert.ErrorContains(t, err, `instances[0] (db1).drill.host`)
}

func TestDrillPointInTime(t *testing.T) {
	base := "storage: {local: {root: r}}\n"
	inst := `instances:
  - {id: db1, host: h1, connect: {address: "x:1", user: u}, datadir: /d}
  - {id: db2, host: h2, connect: {address: "x:1", user: u}, datadir: /d, drill: {point_in_time: true}}
`
	c, err := Parse([]byte(base + inst))
	require.NoError(t, err)
	assert.True(t, c.DrillPointInTime(&c.Instances[0]), "default: replay to the newest archived transaction")
	c, err = Parse([]byte(base + "drill: {point_in_time: false}\n" + inst))
	require.NoError(t, err)
	assert.False(t, c.DrillPointInTime(&c.Instances[0]), "the fleet's setting")
	assert.True(t, c.DrillPointInTime(&c.Instances[1]), "the instance's overrides it")
}
