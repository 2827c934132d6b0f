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

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Extractor writes tar entries under Root.
type Extractor struct {
	Root string
	// Limit bounds the bytes of file content written in all; 0 means no
	// limit.
	Limit   int64
	written int64
}

// The bounds of names in an archive: Linux's own, so that nothing an
// honest archive holds is refused, and nothing longer reaches the file
// system, whose refusal would quote the name in full.
const (
	// MaxPath bounds an entry's whole name (PATH_MAX).
	MaxPath = 4096
	// MaxName bounds one part of it (NAME_MAX, and ext4's).
	MaxName = 255
	// MaxLinkTarget bounds a symlink's target: symlink(2) takes PATH_MAX
	// bytes with the NUL that ends it.
	MaxLinkTarget = MaxPath - 1
)

// CheckName is the rule every name from an untrusted source (a layer, a
// guest's disk, its SFTP server, its tar) keeps before it becomes part of
// a host path: not empty, "." or "..", at most MaxName bytes, no NUL and
// no "/".
func CheckName(name string) error {
	bad := func(rule string) error {
		return fmt.Errorf("entry %s: %s: %w", errdefs.Quote(name), rule, errdefs.ErrInvalid)
	}
	switch {
	case name == "":
		return bad("names may not be empty")
	case name == "." || name == "..":
		return bad(`names may not be "." or ".."`)
	case len(name) > MaxName:
		return bad(fmt.Sprintf("names are at most %d bytes", MaxName))
	case strings.ContainsRune(name, 0):
		return bad("names may not hold a NUL byte")
	case strings.ContainsRune(name, '/'):
		return bad(`names may not hold a "/"`)
	}
	return nil
}

// Clean turns a tar entry name into a clean relative path, or rejects it.
func Clean(name string) (string, error) {
	return clean("entry", name)
}

// CleanTarget is Clean for a hard link's target, another entry's name.
func CleanTarget(name string) (string, error) {
	return clean("target", name)
}

func clean(what, name string) (string, error) {
	bad := func(rule string) (string, error) {
		return "", fmt.Errorf("%s %s: %s: %w", what, errdefs.Quote(name), rule, errdefs.ErrInvalid)
	}
	switch {
	case name == "":
		return "", fmt.Errorf("empty %s name: names may not be empty: %w", what, errdefs.ErrInvalid)
	case len(name) > MaxPath:
		return bad(fmt.Sprintf("names are at most %d bytes", MaxPath))
	case strings.ContainsRune(name, 0):
		return bad("NUL in name: names may not hold a NUL byte")
	case path.IsAbs(name):
		return bad("absolute path: names are relative to the archive root")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return bad(`a ".." component: the path leaves the archive root`)
		}
		// An image layer's whiteout names a file of up to MaxName bytes
		// behind its prefix; it is never written itself.
		if len(strings.TrimPrefix(part, ".wh.")) > MaxName {
			return bad(fmt.Sprintf("a part of %d bytes: each part of a name is at most %d bytes", len(part), MaxName))
		}
	}
	c := path.Clean(name)
	if c == "." {
		return ".", nil
	}
	return c, nil
}

// CheckSymlink checks a symlink's target, which is stored as it is and
// never followed on the host, so may point anywhere: it must only be
// one the kernel can store.
func CheckSymlink(target string) error {
	switch {
	case target == "":
		return fmt.Errorf("empty symlink target: a symlink must point somewhere: %w", errdefs.ErrInvalid)
	case len(target) > MaxLinkTarget:
		return fmt.Errorf("symlink target %s: link targets are at most %d bytes: %w", errdefs.Quote(target), MaxLinkTarget, errdefs.ErrInvalid)
	case strings.ContainsRune(target, 0):
		return fmt.Errorf("symlink target %s: link targets may not hold a NUL byte: %w", errdefs.Quote(target), errdefs.ErrInvalid)
	}
	return nil
}

// entryErr is an error of the host's file system about rel, without the
// host path, which holds the entry's name in full.
func entryErr(rel, doing string, err error) error {
	return fmt.Errorf("entry %s: %s: %w", errdefs.Quote(rel), doing, errdefs.WithoutPath(err))
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
					return "", entryErr(rel, "make its parent directory", err)
				}
			case err != nil:
				return "", entryErr(rel, "look at its parent directory", err)
			case fi.Mode()&fs.ModeSymlink != 0:
				return "", fmt.Errorf("entry %s: parent %s is a symlink: refusing to write through it: %w", errdefs.Quote(rel), errdefs.Quote(part), errdefs.ErrInvalid)
			case !fi.IsDir():
				return "", fmt.Errorf("entry %s: parent %s is not a directory: an entry's parents must be directories: %w", errdefs.Quote(rel), errdefs.Quote(part), errdefs.ErrInvalid)
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
			return entryErr(rel, "replace what is there", err)
		}
	}
	mode := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(dst, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return entryErr(rel, "make the directory", err)
		}
		if err := os.Chmod(dst, mode|0o700); err != nil {
			return entryErr(rel, "set its mode", err)
		}
		return nil
	case tar.TypeReg:
		if e.Limit > 0 && e.written+hdr.Size > e.Limit {
			return fmt.Errorf("entry %s: archive unpacks to more than the %d-byte limit: %w", errdefs.Quote(rel), e.Limit, errdefs.ErrInvalid)
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
		if err != nil {
			return entryErr(rel, "create the file", err)
		}
		n, err := io.Copy(f, io.LimitReader(r, hdr.Size))
		e.written += n
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return entryErr(rel, "write the file", err)
		}
		if n != hdr.Size {
			return fmt.Errorf("entry %s: archive ends mid-file (%d of %d bytes): %w", errdefs.Quote(rel), n, hdr.Size, errdefs.ErrInvalid)
		}
		return nil
	case tar.TypeSymlink:
		if err := CheckSymlink(hdr.Linkname); err != nil {
			return fmt.Errorf("entry %s: %w", errdefs.Quote(rel), err)
		}
		// The link's text is stored as is; it is never followed here.
		if err := os.Symlink(hdr.Linkname, dst); err != nil {
			return entryErr(rel, "make the symlink", err)
		}
		return nil
	case tar.TypeLink:
		target, err := CleanTarget(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link %s: %w", errdefs.Quote(rel), err)
		}
		src, err := e.safeParent(target)
		if err != nil {
			return fmt.Errorf("hard link %s: %w", errdefs.Quote(rel), err)
		}
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("hard link %s: target %s is not a regular file in the archive: a hard link must name one: %w", errdefs.Quote(rel), errdefs.Quote(hdr.Linkname), errdefs.ErrInvalid)
		}
		if err := os.Link(src, dst); err != nil {
			return entryErr(rel, "make the hard link", err)
		}
		return nil
	default:
		// Devices, fifos and the like have no place in what banger
		// extracts to the host; image layers go to ext4 by another path.
		return nil
	}
}
