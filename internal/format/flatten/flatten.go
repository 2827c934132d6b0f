// Package flatten merges the layers of an OCI image into one file tree,
// honouring whiteouts and opaque directories, and writes it out as a single
// ordered tar stream (parents before children, hard links after their
// targets) ready for an ext4 writer.
//
// Layers are untrusted: no entry may land outside the root (absolute paths,
// ".."), none may be written through a symlink, hard links must name a
// regular file already in the tree, and the bytes a layer decompresses to
// are bounded. File contents are spooled to a temporary file as layers are
// applied, so memory grows with the number of files, never with their size.
package flatten

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// node is one entry of the merged tree.
type node struct {
	typ      byte
	mode     int64
	uid, gid int
	mtime    time.Time
	linkname string // symlink target
	devmajor int64
	devminor int64
	xattrs   map[string]string

	off, size int64 // regular file content in the spool
	link      *node // hard link: the node it shares content with
	layer     int   // which layer last wrote it
	children  map[string]*node
}

func (n *node) isDir() bool { return n.typ == tar.TypeDir }

// Tree is a merged file tree under construction.
type Tree struct {
	root   *node
	spool  *os.File
	sw     *bufio.Writer // buffers spool writes, which are sequential
	offset int64
	// Limit bounds the bytes all layers may decompress to.
	Limit int64
	read  int64
	files int
	layer int
}

// New returns an empty tree spooling file contents into a temporary file
// in dir.
func New(dir string, limit int64) (*Tree, error) {
	f, err := os.CreateTemp(dir, "spool-")
	if err != nil {
		return nil, fmt.Errorf("create spool: %w", err)
	}
	// The spool needs no name: it is gone once closed, even after a crash.
	os.Remove(f.Name())
	root := &node{typ: tar.TypeDir, mode: 0o755, children: map[string]*node{}, mtime: time.Unix(0, 0)}
	return &Tree{root: root, spool: f, sw: bufio.NewWriterSize(f, 1<<20), Limit: limit}, nil
}

// Close releases the spool.
func (t *Tree) Close() error { return t.spool.Close() }

// Files reports how many entries the tree holds.
func (t *Tree) Files() int { return t.files }

// countingReader counts the decompressed bytes of a layer against the limit.
type countingReader struct {
	r     io.Reader
	t     *Tree
	layer int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.t.read += int64(n)
	if c.t.Limit > 0 && c.t.read > c.t.Limit {
		return n, fmt.Errorf("layer %d: layers decompress to more than the %d-byte limit (max_unpacked_bytes): %w", c.layer, c.t.Limit, errdefs.ErrInvalid)
	}
	return n, err
}

// Apply merges one uncompressed layer tar stream on top of the tree.
func (t *Tree) Apply(r io.Reader) error {
	t.layer++
	cr := &countingReader{r: r, t: t, layer: t.layer}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return layerError(t.layer, err)
		}
		if err := t.entry(h, tr); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("layer %d: tar ends mid-entry (truncated layer): %w", t.layer, errdefs.ErrInvalid)
			}
			return fmt.Errorf("layer %d: %w", t.layer, err)
		}
	}
}

// lookupDir walks to the directory holding rel, creating missing parents
// (as the layer format allows) and refusing to pass through a symlink or a
// non-directory.
func (t *Tree) lookupDir(rel string, create bool) (*node, error) {
	dir := path.Dir(rel)
	cur := t.root
	if dir == "." {
		return cur, nil
	}
	for _, part := range strings.Split(dir, "/") {
		next, ok := cur.children[part]
		switch {
		case !ok && !create:
			return nil, nil
		case !ok:
			next = &node{typ: tar.TypeDir, mode: 0o755, children: map[string]*node{}, layer: t.layer, mtime: time.Unix(0, 0)}
			cur.children[part] = next
			t.files++
		case next.typ == tar.TypeSymlink:
			// Not the link's target too: three quoted names would make a
			// message of over 300 characters.
			return nil, fmt.Errorf("entry %s: %s is a symlink: a layer may not write through a symlink: %w", errdefs.Quote(rel), errdefs.Quote(part), errdefs.ErrInvalid)
		case !next.isDir():
			return nil, fmt.Errorf("entry %s: %s is not a directory: an entry's parents must be directories: %w", errdefs.Quote(rel), errdefs.Quote(part), errdefs.ErrInvalid)
		}
		cur = next
	}
	return cur, nil
}

// entry applies one entry of the layer being applied, r its content.
func (t *Tree) entry(h *tar.Header, r io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := tarx.Clean(h.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		if h.Typeflag == tar.TypeDir {
			t.root.mode, t.root.uid, t.root.gid, t.root.mtime = h.Mode, h.Uid, h.Gid, h.ModTime
		}
		return nil
	}
	base := path.Base(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return t.whiteout(rel, base)
	}
	parent, err := t.lookupDir(rel, true)
	if err != nil {
		return err
	}
	old, exists := parent.children[base]
	n := t.newNode(h)
	if err := t.fill(n, h, r, rel, old); err != nil {
		return err
	}
	if !exists {
		t.files++
	}
	parent.children[base] = n
	return nil
}

// whiteout applies a whiteout entry: it hides what lower layers put at
// rel's name, or, as the opaque marker, everything they put in its
// directory.
func (t *Tree) whiteout(rel, base string) error {
	parent, err := t.lookupDir(rel, false)
	if err != nil || parent == nil {
		return err
	}
	if base == opaqueMarker {
		for name, c := range parent.children {
			if c.layer < t.layer {
				delete(parent.children, name)
			}
		}
		return nil
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if c, ok := parent.children[victim]; ok && c.layer < t.layer {
		delete(parent.children, victim)
	}
	return nil
}

// newNode is the node of h's metadata and extended attributes, written
// by the layer being applied.
func (t *Tree) newNode(h *tar.Header) *node {
	n := &node{
		typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid, mtime: h.ModTime,
		devmajor: h.Devmajor, devminor: h.Devminor, layer: t.layer,
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if n.xattrs == nil {
				n.xattrs = map[string]string{}
			}
			n.xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = v
		}
	}
	return n
}

// fill gives n what its type carries: a directory's children (old's, when
// it replaces a directory), a file's content, a link's target. It refuses
// the entry types a rootfs has no place for.
func (t *Tree) fill(n *node, h *tar.Header, r io.Reader, rel string, old *node) error {
	switch h.Typeflag {
	case tar.TypeDir:
		if old != nil && old.isDir() {
			// A directory over a directory keeps what is inside.
			n.children = old.children
		} else {
			n.children = map[string]*node{}
		}
	case tar.TypeReg:
		return t.spoolContent(n, h, r, rel)
	case tar.TypeSymlink:
		if err := tarx.CheckSymlink(h.Linkname); err != nil {
			return fmt.Errorf("entry %s: %w", errdefs.Quote(rel), err)
		}
		n.linkname = h.Linkname
	case tar.TypeLink:
		tn, err := t.linkTarget(rel, h.Linkname)
		if err != nil {
			return err
		}
		n.typ = tar.TypeReg
		n.link = tn
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		// Sparse-file and other exotic entries have no place in a rootfs.
		return fmt.Errorf("entry %s: unsupported tar entry type %q: a layer holds files, directories, links, devices and fifos: %w", errdefs.Quote(rel), h.Typeflag, errdefs.ErrInvalid)
	}
	return nil
}

// spoolContent copies a regular file's content from r to the spool.
func (t *Tree) spoolContent(n *node, h *tar.Header, r io.Reader, rel string) error {
	n.off = t.offset
	w, err := io.Copy(t.sw, io.LimitReader(r, h.Size))
	if err != nil {
		return fmt.Errorf("entry %s: %w", errdefs.Quote(rel), err)
	}
	if w != h.Size {
		return fmt.Errorf("entry %s: tar ends mid-file: %w", errdefs.Quote(rel), io.ErrUnexpectedEOF)
	}
	n.size = w
	t.offset += w
	return nil
}

// linkTarget resolves a hard link's target: a regular file already in the
// tree, reached without passing through a symlink.
func (t *Tree) linkTarget(rel, linkname string) (*node, error) {
	target, err := tarx.CleanTarget(linkname)
	if err != nil {
		return nil, fmt.Errorf("hard link %s: %w", errdefs.Quote(rel), err)
	}
	tdir, err := t.lookupDir(target, false)
	if err != nil {
		return nil, fmt.Errorf("hard link %s: %w", errdefs.Quote(rel), err)
	}
	var tn *node
	if tdir != nil {
		tn = tdir.children[path.Base(target)]
	}
	for tn != nil && tn.link != nil {
		tn = tn.link
	}
	if tn == nil || tn.typ != tar.TypeReg {
		return nil, fmt.Errorf("hard link %s: target %s is not a regular file in the image: a hard link must name one: %w", errdefs.Quote(rel), errdefs.Quote(linkname), errdefs.ErrInvalid)
	}
	return tn, nil
}

// Extra is a file banger adds to the tree (finalize: its own files,
// hostname, keys), replacing whatever the image had there.
type Extra struct {
	Path     string // absolute, inside the guest
	Mode     int64  // permission bits; a trailing "/" in Path makes a directory
	UID, GID int
	Body     []byte
	Symlink  string
}

// header is the tar header of an extra file.
func (e Extra) header() *tar.Header {
	rel := strings.TrimPrefix(path.Clean(e.Path), "/")
	h := &tar.Header{Name: rel, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: time.Now(), Typeflag: tar.TypeReg, Size: int64(len(e.Body)), Format: tar.FormatPAX}
	switch {
	case strings.HasSuffix(e.Path, "/"):
		h.Typeflag, h.Size = tar.TypeDir, 0
	case e.Symlink != "":
		h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Symlink, 0
	}
	return h
}

// Add puts an extra file into the tree, creating parent directories.
func (t *Tree) Add(e Extra) error {
	h := e.header()
	rel := h.Name
	// Extras may replace a symlink (an image's /etc/resolv.conf often is
	// one) but, like layers, never write through one.
	if parent, err := t.lookupDir(rel, true); err == nil {
		if old, ok := parent.children[path.Base(rel)]; ok && old.typ == tar.TypeSymlink {
			delete(parent.children, path.Base(rel))
		}
	}
	t.layer++
	err := t.entry(h, strings.NewReader(string(e.Body)))
	if err != nil {
		return fmt.Errorf("add %s: %w", e.Path, err)
	}
	return nil
}

// WriteTar writes the merged tree as one tar stream.
func (t *Tree) WriteTar(w io.Writer) error {
	if err := t.sw.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	tw := tar.NewWriter(w)
	written := map[*node]string{} // regular files, for hard links
	var links []struct {
		name string
		n    *node
	}
	var walk func(dir *node, prefix string) error
	walk = func(dir *node, prefix string) error {
		names := make([]string, 0, len(dir.children))
		for name := range dir.children {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			n := dir.children[name]
			p := prefix + name
			if n.link != nil {
				links = append(links, struct {
					name string
					n    *node
				}{p, n})
				continue
			}
			if err := t.writeNode(tw, p, n, n); err != nil {
				return err
			}
			if n.typ == tar.TypeReg {
				written[n] = p
			}
			if n.isDir() {
				if err := walk(n, p+"/"); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(t.root, ""); err != nil {
		return err
	}
	for _, l := range links {
		target := l.n.link
		if tp, ok := written[target]; ok {
			h := &tar.Header{Name: l.name, Typeflag: tar.TypeLink, Linkname: tp, Mode: target.mode, Uid: target.uid, Gid: target.gid, ModTime: target.mtime}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		// The target was deleted or replaced by a later layer: the link
		// keeps the content it had.
		if err := t.writeNode(tw, l.name, l.n, target); err != nil {
			return err
		}
		written[target] = l.name
	}
	return tw.Close()
}

// writeNode writes n's header (and content, read from src) at name.
func (t *Tree) writeNode(tw *tar.Writer, name string, n, src *node) error {
	h := &tar.Header{
		Name: name, Typeflag: n.typ, Mode: n.mode, Uid: n.uid, Gid: n.gid, ModTime: n.mtime,
		Linkname: n.linkname, Devmajor: n.devmajor, Devminor: n.devminor, Format: tar.FormatPAX,
	}
	if src != n {
		h.Mode, h.Uid, h.Gid, h.ModTime = src.mode, src.uid, src.gid, src.mtime
	}
	if n.isDir() {
		h.Name += "/"
	}
	if len(src.xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		for k, v := range src.xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	if h.Typeflag == tar.TypeReg {
		h.Size = src.size
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if h.Typeflag == tar.TypeReg && src.size > 0 {
		if _, err := io.Copy(tw, io.NewSectionReader(t.spool, src.off, src.size)); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
