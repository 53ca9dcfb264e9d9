package main

import "testing"

// Two spellings of one target gave two restore workflows, which could run
// into the same directory at once.
func TestRestoreWorkflowIDNormalizesTarget(t *testing.T) {
	want := restoreWorkflowID("h1", "/x")
	for _, dir := range []string{"/x/", "/x//", "/x/.", "//x", "/y/../x"} {
		if got := restoreWorkflowID("h1", dir); got != want {
			t.Errorf("restoreWorkflowID(%q) = %q, want %q", dir, got, want)
		}
	}
	if want != "restore/h1:/x" {
		t.Errorf("restoreWorkflowID = %q", want)
	}
}
