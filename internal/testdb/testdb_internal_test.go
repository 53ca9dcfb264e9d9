package testdb

import (
	"strings"
	"testing"
)

func TestAvailableMissingTools(t *testing.T) {
	saved := extraBinDirs
	t.Cleanup(func() { extraBinDirs = saved })
	extraBinDirs = nil
	t.Setenv("PATH", t.TempDir())

	err := Available()
	if err == nil {
		t.Fatal("Available() = nil with an empty PATH")
	}
	for _, want := range []string{"mariadbd", "mariabackup", "mbstream", "make deps"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Available() error %q does not mention %q", err, want)
		}
	}
}

func TestQuoteString(t *testing.T) {
	if got, want := quoteString(`a'b\c`), `'a\'b\\c'`; got != want {
		t.Errorf("quoteString = %s, want %s", got, want)
	}
}
