package main

import (
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
