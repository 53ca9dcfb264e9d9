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
