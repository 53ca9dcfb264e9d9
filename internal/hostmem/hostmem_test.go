package hostmem

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	m, err := Parse([]byte("MemTotal:       24684132 kB\nMemFree:        14141440 kB\nMemAvailable:   23977664 kB\nCached: 5 kB\n"))
	require.NoError(t, err)
	assert.Equal(t, Memory{Total: 24684132 << 10, Available: 23977664 << 10}, m)

	m, err = Parse([]byte("MemAvailable: 0 kB\n"))
	require.NoError(t, err)
	assert.Equal(t, Memory{}, m, "nothing available, total unknown")

	for in, want := range map[string]string{
		"MemTotal: 1000 kB\nMemFree: 10 kB\n":     "no MemAvailable line",
		"MemAvailable: lots\n":                    "malformed MemAvailable",
		"MemAvailable: 1000 MB\n":                 "malformed MemAvailable",
		"MemAvailable: 99999999999999999999 kB\n": "malformed MemAvailable",
		"MemAvailable: -5 kB\n":                   "malformed MemAvailable",
		"":                                        "no MemAvailable line",
	} {
		_, err := Parse([]byte(in))
		assert.ErrorContains(t, err, want, in)
	}
}

func TestReadThisHost(t *testing.T) {
	m, err := Read()
	require.NoError(t, err)
	assert.Positive(t, m.Available)
	assert.GreaterOrEqual(t, m.Total, m.Available)
}
