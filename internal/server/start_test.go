package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A binary that cannot be run is the host's fault (ErrNoBinary), not the
// datadir's: a drill must not condemn a backup for it.
func TestStartWithABinaryThatDoesNotRunIsErrNoBinary(t *testing.T) {
	datadir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(datadir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Datadir: datadir, Binary: filepath.Join(t.TempDir(), "no-mariadbd")})
	if !errors.Is(err, ErrNoBinary) {
		t.Fatalf("Start = %v, want ErrNoBinary", err)
	}
}

// A server that keeps running but never answers is ErrNotReady (a slow
// host as much as a bad datadir), distinct from one that exits.
func TestStartOfAServerThatNeverAnswersIsErrNotReady(t *testing.T) {
	dir := t.TempDir()
	datadir := filepath.Join(dir, "data")
	if err := os.MkdirAll(datadir, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "silent-mariadbd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 30\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Datadir: datadir, Binary: bin, ReadyTimeout: time.Second})
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("Start = %v, want ErrNotReady", err)
	}
}

// Start asks a starting server often at first, so that a server that
// answers after a fraction of a second is not left waiting for the next
// poll, and less often during a long start-up (crash recovery).
func TestReadyPollIsShortWhileTheServerUsuallyStarts(t *testing.T) {
	for _, e := range []time.Duration{0, 100 * time.Millisecond, time.Second, 4 * time.Second} {
		if d := readyPoll(e); d > 20*time.Millisecond {
			t.Errorf("readyPoll(%v) = %v, want at most 20ms", e, d)
		}
	}
	for _, e := range []time.Duration{10 * time.Second, time.Hour} {
		if d := readyPoll(e); d < 100*time.Millisecond || d > 500*time.Millisecond {
			t.Errorf("readyPoll(%v) = %v, want 100ms to 500ms", e, d)
		}
	}
}
