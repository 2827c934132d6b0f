// Package upload holds the files clients send the daemon: a kernel, an
// initrd, a .deb, a root file system, a module tree. The root daemon
// never opens a path a caller names (it would read any file on the host
// for anyone who may reach its socket); the client opens the file with
// its own rights and streams it, and requests name the upload by ID.
package upload

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/format/sparse"

	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// TTL is how long an upload waits for the request that uses it.
const TTL = time.Hour

// Kinds of upload.
const (
	File   = api.UploadFile
	Tree   = api.UploadTree
	Sparse = api.UploadSparse
)

// Store keeps uploads in a private staging directory.
type Store struct {
	// Dir is the state directory's staging area.
	Dir string
	// MaxBytes bounds one upload (a tree's unpacked content too).
	MaxBytes int64
	Log      *slog.Logger

	mu     sync.Mutex
	owners map[string]uint32 // guarded by mu: who sent each upload (a restart drops uploads)
}

func (s *Store) path(id string) string { return filepath.Join(s.Dir, "upload-"+id) }

// Put stores the body r as a new upload of kind and returns its ID, size
// and digest. Nothing is left on failure.
func (s *Store) Put(ctx context.Context, r io.Reader, kind string) (api.Upload, error) {
	s.expire(TTL)
	if kind != File && kind != Tree && kind != Sparse {
		return api.Upload{}, fmt.Errorf("upload kind %q: want %s, %s or %s: %w", kind, File, Sparse, Tree, errdefs.ErrInvalid)
	}
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	dst := s.path(id)
	sum := sha256.New()
	limited := &limitReader{r: operation.NewReader(ctx, r, 0, nil), left: s.MaxBytes}
	body := io.TeeReader(limited, sum)
	var n int64
	var err error
	switch kind {
	case File:
		n, err = s.putFile(body, dst)
	case Sparse:
		n, err = s.putSparse(body, dst)
		kind = File
	default:
		n, err = s.putTree(body, dst)
	}
	if err != nil {
		os.RemoveAll(dst)
		if ctx.Err() != nil {
			return api.Upload{}, ctx.Err()
		}
		return api.Upload{}, fmt.Errorf("upload: %w", err)
	}
	s.mu.Lock()
	if s.owners == nil {
		s.owners = map[string]uint32{}
	}
	s.owners[id] = peer.UID(ctx)
	s.mu.Unlock()
	return api.Upload{ID: id, Kind: kind, Bytes: n, Digest: "sha256:" + hex.EncodeToString(sum.Sum(nil))}, nil
}

func (s *Store) putFile(r io.Reader, dst string) (int64, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// putSparse writes a file sent as its data extents, leaving holes between
// them, and returns its size.
func (s *Store) putSparse(r io.Reader, dst string) (int64, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	size, err := sparse.Unpack(r, f)
	if err == nil {
		err = f.Truncate(size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return size, err
}

// putTree unpacks a tar stream under dst, which nothing in it may leave.
func (s *Store) putTree(r io.Reader, dst string) (int64, error) {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return 0, err
	}
	x := &tarx.Extractor{Root: dst, Limit: s.MaxBytes}
	tr := tar.NewReader(r)
	var n int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Drain what follows the end of the archive: it is counted
			// and bounded like the rest.
			io.Copy(io.Discard, r)
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read tar: %w: %w", err, errdefs.ErrInvalid)
		}
		rel, err := tarx.Clean(h.Name)
		if err != nil {
			return n, err
		}
		if rel == "." {
			continue
		}
		if err := x.Entry(rel, h, tr); err != nil {
			return n, err
		}
		n += h.Size
	}
}

// isID says whether id is one Put made: 32 lower-case hex digits.
func isID(id string) bool { return len(id) == 32 && strings.Trim(id, "0123456789abcdef") == "" }

// Path returns where upload id of kind, sent by ctx's caller, is, for the
// daemon's own use: another user's upload is one that does not exist.
func (s *Store) Path(ctx context.Context, id, kind string) (string, error) {
	if !isID(id) {
		return "", fmt.Errorf("%q is not an upload id: the daemon opens no path a client names; send the file with POST /v1/uploads (the CLI does): %w", id, errdefs.ErrInvalid)
	}
	p := s.path(id)
	s.mu.Lock()
	owner, known := s.owners[id]
	s.mu.Unlock()
	fi, err := os.Lstat(p)
	if err != nil || !known || !peer.Owns(ctx, owner) {
		return "", fmt.Errorf("upload %s does not exist (uploads wait %s, and a daemon restart drops them): send it again: %w", id, TTL, errdefs.ErrNotFound)
	}
	if (kind == Tree) != fi.IsDir() {
		return "", fmt.Errorf("upload %s is not a %s: %w", id, kind, errdefs.ErrInvalid)
	}
	return p, nil
}

// Remove drops an upload once used (or refused).
func (s *Store) Remove(id string) {
	if isID(id) {
		os.RemoveAll(s.path(id))
		s.mu.Lock()
		delete(s.owners, id)
		s.mu.Unlock()
	}
}

// Recover removes what a previous daemon was sent: no client waits on it.
func (s *Store) Recover() { s.expire(0) }

func (s *Store) expire(age time.Duration) {
	es, _ := os.ReadDir(s.Dir)
	for _, e := range es {
		if !strings.HasPrefix(e.Name(), "upload-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) >= age {
			if s.Log != nil {
				s.Log.Info("removing an unused upload", "upload", e.Name())
			}
			s.Remove(strings.TrimPrefix(e.Name(), "upload-"))
		}
	}
}

// limitReader fails a stream longer than left bytes.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if l.left -= int64(n); l.left < 0 {
		return n, fmt.Errorf("upload larger than the daemon's max_unpacked_bytes: %w", errdefs.ErrInvalid)
	}
	return n, err
}
