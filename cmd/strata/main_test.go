package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// Every command of the tree builds, and its flags merge with the inherited
// ones without a clash: pflag panics on a flag defined twice, which would
// make every invocation of the binary fail.
func TestCommandTreeBuilds(t *testing.T) {
	var root *cobra.Command
	require.NotPanics(t, func() { root = newRoot(&app{}) })
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		n++
		require.NotPanics(t, func() { c.Flags(); c.InheritedFlags(); c.LocalFlags() }, "flags of %q", c.CommandPath())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	require.Greater(t, n, 10, "the tree has its commands")
	restore, _, err := root.Find([]string{"restore"})
	require.NoError(t, err)
	require.NotNil(t, restore.Flags().Lookup("allow-unencrypted"))
}

// --log-format takes json or console; anything else fails naming the flag.
func TestLogFormatFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "strata.yaml")
	require.NoError(t, os.WriteFile(path, []byte("storage: {local: {root: r}}\ninstances:\n  - {id: a, host: h, connect: {address: \"x:1\", user: u}, datadir: /d}\n"), 0o600))
	for _, f := range []string{"", "json", "console"} {
		a := &app{configPath: path, logLevel: "info", logFormat: f, jsonDefault: true}
		require.NoError(t, a.load(), f)
	}
	for _, c := range []struct {
		format       string
		logJSON, svc bool
		want         bool
	}{
		{"", false, false, false}, // the operator's commands: console
		{"", false, true, true},   // strata worker, strata agent: JSON
		{"", true, false, true},   // --log-json
		{"console", false, true, false},
		{"console", true, true, false},
		{"json", false, false, true},
	} {
		a := &app{logFormat: c.format, logJSON: c.logJSON, jsonDefault: c.svc}
		got, err := a.jsonLogs()
		require.NoError(t, err)
		require.Equal(t, c.want, got, "%+v", c)
	}
	a := &app{configPath: path, logLevel: "info", logFormat: "text"}
	err := a.load()
	require.Error(t, err)
	require.Contains(t, err.Error(), `--log-format "text": use json or console`)
}
