package repo

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
)

func mf(id, typ, parent string, from, to uint64) *manifest.Manifest {
	return &manifest.Manifest{BackupID: id, Type: typ, ParentID: parent, FromLSN: from, ToLSN: to}
}

func ids(ms []*manifest.Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.BackupID)
	}
	return out
}

func TestChain(t *testing.T) {
	all := []*manifest.Manifest{
		mf("f1", "full", "", 0, 100),
		mf("i1", "incremental", "f1", 100, 150),
		mf("i2", "incremental", "i1", 150, 180),
		mf("d1", "differential", "f1", 100, 200),
		mf("i3", "incremental", "d1", 200, 220),
	}
	for id, want := range map[string][]string{
		"f1": {"f1"}, "i1": {"f1", "i1"}, "i2": {"f1", "i1", "i2"}, "d1": {"f1", "d1"}, "i3": {"f1", "d1", "i3"},
	} {
		got, err := Chain(all, id)
		require.NoError(t, err, id)
		assert.Equal(t, want, ids(got), id)
	}
	_, err := Chain(all, "nope")
	assert.True(t, errors.Is(err, ErrBackupNotFound))
}

func TestChainBroken(t *testing.T) {
	cases := map[string][]*manifest.Manifest{
		"missing parent": {mf("i1", "incremental", "f0", 100, 150)},
		"lsn gap":        {mf("f1", "full", "", 0, 100), mf("i1", "incremental", "f1", 120, 150)},
		"diff on inc":    {mf("f1", "full", "", 0, 100), mf("i1", "incremental", "f1", 100, 150), mf("d1", "differential", "i1", 150, 200)},
		"cycle":          {mf("a", "incremental", "b", 1, 2), mf("b", "incremental", "a", 2, 1)},
	}
	for name, all := range cases {
		_, err := Chain(all, all[len(all)-1].BackupID)
		assert.True(t, errors.Is(err, ErrBrokenChain), "%s: %v", name, err)
	}
}
