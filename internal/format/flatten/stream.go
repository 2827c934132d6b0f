package flatten

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Stream checks a single layer (or a root file system tarball) entry by
// entry and copies it to w as it goes, then appends extras. With nothing
// beneath it, a lone layer needs no spool: its whiteouts hide nothing and
// every entry lands where it says. The same rules as Apply hold: nothing
// outside the root, nothing through a symlink, hard links only to regular
// files already written, and the decompressed size bounded by t.Limit.
//
// t must be fresh; it keeps only metadata. Stream reports how many entries
// it wrote.
func (t *Tree) Stream(r io.Reader, w io.Writer, extras []Extra) (int, error) {
	t.layer++
	cr := &countingReader{r: r, t: t, layer: t.layer}
	tr := tar.NewReader(cr)
	tw := tar.NewWriter(w)
	// An extra file replaces the image's own (its /etc/hostname): the
	// image's is not written at all, since the ext4 writer cannot write a
	// file twice.
	replaced := map[string]bool{}
	for _, x := range extras {
		if h := x.header(); h.Typeflag != tar.TypeDir {
			replaced[h.Name] = true
		}
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, layerError(t.layer, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		rel, err := tarx.Clean(h.Name)
		if err != nil {
			return 0, fmt.Errorf("layer %d: %w", t.layer, err)
		}
		if rel == "." || strings.HasPrefix(path.Base(rel), whiteoutPrefix) {
			continue
		}
		if err := t.check(rel, h); err != nil {
			return 0, fmt.Errorf("layer %d: %w", t.layer, err)
		}
		if replaced[rel] && h.Typeflag != tar.TypeDir {
			continue
		}
		out := *h
		out.Name = rel
		if h.Typeflag == tar.TypeDir {
			out.Name += "/"
		}
		if h.Typeflag == tar.TypeLink {
			out.Linkname, _ = tarx.CleanTarget(h.Linkname)
		}
		if err := tw.WriteHeader(&out); err != nil {
			return 0, fmt.Errorf("layer %d: entry %s: %w", t.layer, errdefs.Quote(rel), err)
		}
		if h.Typeflag == tar.TypeReg {
			n, err := io.Copy(tw, tr)
			if err != nil {
				return 0, layerError(t.layer, err)
			}
			if n != h.Size {
				return 0, fmt.Errorf("layer %d: tar ends mid-entry (truncated layer): %w", t.layer, errdefs.ErrInvalid)
			}
		}
	}
	for _, x := range extras {
		h := x.header()
		if err := t.check(h.Name, h); err != nil {
			return 0, fmt.Errorf("add %s: %w", x.Path, err)
		}
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return 0, err
		}
		if _, err := tw.Write(x.Body); err != nil {
			return 0, err
		}
	}
	return t.files, tw.Close()
}

func layerError(layer int, err error) error {
	if errors.Is(err, errdefs.ErrInvalid) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("layer %d: tar ends mid-entry (truncated layer): %w", layer, errdefs.ErrInvalid)
	}
	return fmt.Errorf("layer %d: %v: %w", layer, err, errdefs.ErrInvalid)
}

// check validates one entry against the metadata seen so far and records
// it, without keeping any content.
func (t *Tree) check(rel string, h *tar.Header) error {
	parent, err := t.lookupDir(rel, true)
	if err != nil {
		return err
	}
	base := path.Base(rel)
	old := parent.children[base]
	n := &node{typ: h.Typeflag, linkname: h.Linkname, layer: t.layer}
	switch h.Typeflag {
	case tar.TypeDir:
		if old != nil && !old.isDir() {
			return fmt.Errorf("entry %s: a directory replaces a file: a path keeps its type within one layer: %w", errdefs.Quote(rel), errdefs.ErrInvalid)
		}
		if old != nil {
			return nil
		}
		n.children = map[string]*node{}
	case tar.TypeReg, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if old != nil && old.isDir() {
			return fmt.Errorf("entry %s: a file replaces a directory: a path keeps its type within one layer: %w", errdefs.Quote(rel), errdefs.ErrInvalid)
		}
		if h.Typeflag == tar.TypeSymlink {
			if err := tarx.CheckSymlink(h.Linkname); err != nil {
				return fmt.Errorf("entry %s: %w", errdefs.Quote(rel), err)
			}
		}
		n.typ = h.Typeflag
	case tar.TypeLink:
		if _, err := t.linkTarget(rel, h.Linkname); err != nil {
			return err
		}
		if old != nil && old.isDir() {
			return fmt.Errorf("entry %s: a link replaces a directory: a path keeps its type within one layer: %w", errdefs.Quote(rel), errdefs.ErrInvalid)
		}
		n.typ = tar.TypeReg
	default:
		return fmt.Errorf("entry %s: unsupported tar entry type %q: a layer holds files, directories, links, devices and fifos: %w", errdefs.Quote(rel), h.Typeflag, errdefs.ErrInvalid)
	}
	if old == nil {
		t.files++
	}
	parent.children[base] = n
	return nil
}
