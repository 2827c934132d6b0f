// Package tarx extracts untrusted tar streams under a root directory.
//
// Nothing may land outside the root: absolute paths and ".." are rejected,
// no entry is written through a symlink, hard links must point at a
// regular file already inside the root, and the total size is bounded.
package tarx

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/errdefs"
)

// Extractor writes tar entries under Root.
type Extractor struct {
	Root string
	// Limit bounds the bytes of file content written in all; 0 means no
	// limit.
	Limit   int64
	written int64
}

// Clean turns a tar entry name into a clean relative path, or rejects it.
func Clean(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty entry name: %w", errdefs.ErrInvalid)
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("entry %q: NUL in name: %w", name, errdefs.ErrInvalid)
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("entry %q: absolute path: %w", name, errdefs.ErrInvalid)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q: path leaves the archive root: %w", name, errdefs.ErrInvalid)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return ".", nil
	}
	return c, nil
}

// safeParent makes sure every directory between Root and rel exists as a
// real directory (never a symlink), creating missing ones, and returns the
// host path for rel.
func (e *Extractor) safeParent(rel string) (string, error) {
	dir := path.Dir(rel)
	cur := e.Root
	if dir != "." {
		for _, part := range strings.Split(dir, "/") {
			cur = filepath.Join(cur, part)
			fi, err := os.Lstat(cur)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				if err := os.Mkdir(cur, 0o755); err != nil {
					return "", err
				}
			case err != nil:
				return "", err
			case fi.Mode()&fs.ModeSymlink != 0:
				return "", fmt.Errorf("entry %q: parent %q is a symlink: refusing to write through it: %w", rel, part, errdefs.ErrInvalid)
			case !fi.IsDir():
				return "", fmt.Errorf("entry %q: parent %q is not a directory: %w", rel, part, errdefs.ErrInvalid)
			}
		}
	}
	return filepath.Join(e.Root, filepath.FromSlash(rel)), nil
}

// Entry writes one entry at rel (a name already passed through Clean, and
// possibly renamed by the caller), reading file content from r.
func (e *Extractor) Entry(rel string, hdr *tar.Header, r io.Reader) error {
	if rel == "." {
		return nil
	}
	dst, err := e.safeParent(rel)
	if err != nil {
		return err
	}
	// Never replace or follow whatever already sits at dst if it is a
	// symlink: remove it first so that writing creates a new file.
	if fi, err := os.Lstat(dst); err == nil && (fi.Mode()&fs.ModeSymlink != 0 || (!fi.IsDir() && hdr.Typeflag != tar.TypeDir)) {
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	mode := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(dst, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return os.Chmod(dst, mode|0o700)
	case tar.TypeReg:
		if e.Limit > 0 && e.written+hdr.Size > e.Limit {
			return fmt.Errorf("entry %q: archive unpacks to more than the %d-byte limit: %w", rel, e.Limit, errdefs.ErrInvalid)
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, io.LimitReader(r, hdr.Size))
		e.written += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", rel, err)
		}
		if n != hdr.Size {
			return fmt.Errorf("entry %q: archive ends mid-file (%d of %d bytes): %w", rel, n, hdr.Size, errdefs.ErrInvalid)
		}
		return nil
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("entry %q: empty symlink target: %w", rel, errdefs.ErrInvalid)
		}
		// The link's text is stored as is; it is never followed here.
		return os.Symlink(hdr.Linkname, dst)
	case tar.TypeLink:
		target, err := Clean(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link %q: %w", rel, err)
		}
		src, err := e.safeParent(target)
		if err != nil {
			return fmt.Errorf("hard link %q: %w", rel, err)
		}
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("hard link %q: target %q is not a regular file in the archive: %w", rel, hdr.Linkname, errdefs.ErrInvalid)
		}
		return os.Link(src, dst)
	default:
		// Devices, fifos and the like have no place in what banger
		// extracts to the host; image layers go to ext4 by another path.
		return nil
	}
}
