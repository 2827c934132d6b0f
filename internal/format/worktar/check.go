package worktar

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// ErrLimit marks a stream that went past a bound.
var ErrLimit = errors.New("over a bound")

// CheckPath checks a relative path of names, each kept by
// tarx.CheckName.
func CheckPath(p string) error {
	if len(p) > tarx.MaxPath {
		return fmt.Errorf("path %s: paths are at most %d bytes: %w", errdefs.Quote(p), tarx.MaxPath, errdefs.ErrInvalid)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %s: absolute paths are not entries: %w", errdefs.Quote(p), errdefs.ErrInvalid)
	}
	for _, n := range strings.Split(p, "/") {
		if err := tarx.CheckName(n); err != nil {
			return fmt.Errorf("path %s: %w", errdefs.Quote(p), err)
		}
	}
	return nil
}

// Rules bound what Check passes on.
type Rules struct {
	// Entries bounds the entries (max_pull_entries); Bytes the sum of
	// the regular files' sizes (max_pull_bytes).
	Entries int
	Bytes   int64
	// Root allows what a root file system holds beside a work tree's
	// files, directories and symlinks: hard links (to a file already
	// passed), device nodes and FIFOs, and keeps owners.
	Root bool
}

// Check copies the tar stream r to w, entry by entry, refusing the first
// entry that breaks a rule: a name that is not a clean relative path of
// checked names, a type other than those allowed, a link target that is
// empty, too long or holds a NUL, a hard link to anything but a file
// already passed, more entries or bytes than the rules allow. Headers are
// written anew from the fields kept (no PAX records, no extended
// attributes of the sender's), so what w gets is what was checked. The
// archive's end marker is left to the caller (End), so that a stream
// whose sender failed never reads as whole.
func Check(r io.Reader, w io.Writer, rules Rules) error {
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	var entries int
	var bytes int64
	files := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			// The archive's end marker is the caller's to write (End),
			// once it knows the sender finished well: a sender that died
			// half-way leaves a clean entry boundary too.
			return tw.Flush()
		}
		if err != nil {
			return fmt.Errorf("read tar: %w: %w", err, errdefs.ErrInvalid)
		}
		if entries++; entries > rules.Entries {
			return fmt.Errorf("more than %d entries (max_pull_entries): %w", rules.Entries, ErrLimit)
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/")
		}
		if err := CheckPath(name); err != nil {
			return err
		}
		out := &tar.Header{Name: name, Typeflag: h.Typeflag, Mode: h.Mode & 0o7777, ModTime: h.ModTime, Format: tar.FormatPAX}
		if rules.Root {
			out.Uid, out.Gid = h.Uid, h.Gid
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if h.Size < 0 || h.Size > rules.Bytes-bytes {
				return fmt.Errorf("file %s: %d bytes would bring the whole past %d bytes (max_pull_bytes): %w", errdefs.Quote(name), h.Size, rules.Bytes, ErrLimit)
			}
			bytes += h.Size
			out.Size = h.Size
		case tar.TypeDir:
			out.Name += "/"
		case tar.TypeSymlink:
			if err := tarx.CheckSymlink(h.Linkname); err != nil {
				return fmt.Errorf("symlink %s: %w", errdefs.Quote(name), err)
			}
			out.Linkname = h.Linkname
		case tar.TypeLink:
			if !rules.Root || !files[h.Linkname] {
				return fmt.Errorf("hard link %s to %s: only to a non-directory passed before, in a root file system: %w", errdefs.Quote(name), errdefs.Quote(h.Linkname), errdefs.ErrInvalid)
			}
			out.Linkname = h.Linkname
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if !rules.Root {
				return fmt.Errorf("entry %s: device nodes and FIFOs are not work: %w", errdefs.Quote(name), errdefs.ErrInvalid)
			}
			out.Devmajor, out.Devminor = h.Devmajor, h.Devminor
		default:
			return fmt.Errorf("entry %s: type %q is not allowed: %w", errdefs.Quote(name), h.Typeflag, errdefs.ErrInvalid)
		}
		if h.Typeflag != tar.TypeDir {
			files[name] = true
		}
		if err := tw.WriteHeader(out); err != nil {
			return err
		}
		if out.Size > 0 {
			if _, err := io.CopyN(tw, tr, out.Size); err != nil {
				return fmt.Errorf("file %s: %w", errdefs.Quote(name), err)
			}
		}
	}
}

// End writes the end marker of a tar stream Check passed: two zero
// blocks.
func End(w io.Writer) error {
	_, err := w.Write(make([]byte, 1024))
	return err
}

// Tail keeps the first 4 KiB written to it: a bounded place for a
// helper's standard error.
type Tail struct{ b []byte }

func (t *Tail) Write(p []byte) (int, error) {
	if len(t.b) < 4096 {
		t.b = append(t.b, p[:min(len(p), 4096-len(t.b))]...)
	}
	return len(p), nil
}

func (t *Tail) String() string { return string(t.b) }
