// Package publish makes artifacts (kernels, images) appear atomically:
// work happens in a private staging directory, the result is renamed into
// place and recorded in the store under one lock, and whatever a crash
// leaves half-made is removed at the next start.
package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/kit/layout"
)

// Publisher publishes one kind of artifact.
type Publisher struct {
	Kind    string // "kernel", "image": names staging dirs and errors
	Staging string // the state directory's staging area
	Root    string // where published artifacts live, one directory each
	Log     *slog.Logger

	// mu guards the pair (directory under Root, store row): they appear
	// and disappear together.
	mu sync.Mutex
}

// Dir is where the named artifact is published.
func (p *Publisher) Dir(name string) string { return filepath.Join(p.Root, name) }

// Stage creates a fresh staging directory for name. Call done with the
// operation's final error: on failure the directory goes away.
func (p *Publisher) Stage(name string) (dir string, done func(err error), err error) {
	dir = filepath.Join(p.Staging, p.Kind+"-"+name+"-"+randSuffix())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("create staging directory: %w", err)
	}
	return dir, func(err error) {
		if err == nil {
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			p.Log.Warn("staging leftovers will be removed at next start", "dir", dir, "err", rerr)
		}
	}, nil
}

// Publish renames the staged directory into place, then records it. If
// recording fails the directory is moved back, so neither exists alone.
func (p *Publisher) Publish(ctx context.Context, staged, name string, record func(context.Context) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dst := p.Dir(name)
	if _, err := os.Lstat(dst); err == nil {
		// Only an unrecorded leftover can be here: callers hold the name's
		// lock and have checked the store.
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("publish %s %s: %w", p.Kind, name, err)
		}
	}
	// What was unpacked kept its archive's modes (a kernel's module tree
	// is 0755): published state is the daemon's alone.
	if err := layout.MakePrivate(staged); err != nil {
		return fmt.Errorf("publish %s %s: %w", p.Kind, name, err)
	}
	if err := os.Rename(staged, dst); err != nil {
		return fmt.Errorf("publish %s %s: %w", p.Kind, name, err)
	}
	// Past the rename a client's cancel must not split the pair.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := record(rctx); err != nil {
		if rerr := os.Rename(dst, staged); rerr != nil {
			p.Log.Warn("unrecorded directory will be removed at next start", "dir", dst, "err", rerr)
		}
		return err
	}
	return nil
}

// Remove forgets the artifact (forget deletes its row), then deletes its
// directory. A crash in between leaves an unrecorded directory, which
// Recover removes.
func (p *Publisher) Remove(ctx context.Context, name string, forget func(context.Context) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := forget(ctx); err != nil {
		return err
	}
	trash := filepath.Join(p.Staging, p.Kind+"-rm-"+name+"-"+randSuffix())
	if err := os.Rename(p.Dir(name), trash); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s %q: %w", p.Kind, name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		p.Log.Warn("leftover files will be removed at next start", "dir", trash, "err", err)
	}
	return nil
}

// Recover removes staging leftovers of this kind and published
// directories the store does not know.
func (p *Publisher) Recover(known map[string]bool) error {
	entries, err := os.ReadDir(p.Staging)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("recover staging: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), p.Kind+"-") {
			p.Log.Info("removing interrupted work", "dir", e.Name())
			if err := os.RemoveAll(filepath.Join(p.Staging, e.Name())); err != nil {
				return fmt.Errorf("recover staging: %w", err)
			}
		}
	}
	dirs, err := os.ReadDir(p.Root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("recover %ss: %w", p.Kind, err)
	}
	for _, d := range dirs {
		if !known[d.Name()] {
			p.Log.Info("removing unrecorded directory", "kind", p.Kind, "dir", d.Name())
			if err := os.RemoveAll(filepath.Join(p.Root, d.Name())); err != nil {
				return fmt.Errorf("recover %ss: %w", p.Kind, err)
			}
		}
	}
	for name := range known {
		if _, err := os.Stat(p.Dir(name)); err != nil {
			p.Log.Warn("files missing; remove it and pull it again", "kind", p.Kind, "name", name, "err", err)
		}
	}
	return nil
}

func randSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
