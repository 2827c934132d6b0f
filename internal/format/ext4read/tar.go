package ext4read

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Bounds on what a guest's file system may make the reader write.
type Limits struct {
	// Entries bounds the tar's entries; Bytes the sum of the regular
	// files' apparent sizes (a sparse file counts its whole size: its
	// holes become zeros in the tar).
	Entries int
	Bytes   int64
}

// Options say what kind of tree is read.
type Options struct {
	Limits
	// Root reads a whole root file system, for an image: owners kept,
	// device nodes and FIFOs kept as entries, hard links as links. The
	// default is a work tree: regular files, directories and symlinks
	// owned by root, /lost+found left out, every hard link a copy.
	Root bool
	// Skip leaves out the entries whose paths (relative, no leading
	// slash) match one of these path.Match patterns, and what is below
	// them.
	Skip []string
}

// Skipped counts what a work tree left out.
type Skipped struct {
	// Special counts device nodes, FIFOs and sockets.
	Special int
}

const maxDirSize = 256 << 20

// WriteTar writes the tree of f to w as a tar stream.
func (f *FS) WriteTar(w io.Writer, o Options) (Skipped, error) {
	t := &treeWriter{f: f, tw: tar.NewWriter(w), o: o, dirs: map[uint32]bool{}, links: map[uint32]string{}}
	root, err := f.Inode(RootIno)
	if err != nil {
		return t.skipped, err
	}
	if root.Type() != TypeDir {
		return t.skipped, fmt.Errorf("the root inode is not a directory: %w", ErrCorrupt)
	}
	t.dirs[RootIno] = true
	if err := t.dir("", root); err != nil {
		return t.skipped, err
	}
	return t.skipped, t.tw.Close()
}

type treeWriter struct {
	f       *FS
	tw      *tar.Writer
	o       Options
	entries int
	bytes   int64
	dirs    map[uint32]bool   // directory inodes seen: a second sighting is a loop
	links   map[uint32]string // first path of each multiply-linked inode (Root)
	skipped Skipped
}

func (t *treeWriter) dir(dirPath string, dir *Inode) error {
	if dir.Size > maxDirSize {
		return fmt.Errorf("directory %s: %d bytes, at most %d: %w", errdefs.Quote("/"+dirPath), dir.Size, maxDirSize, ErrLimit)
	}
	ents, err := t.f.ReadDir(dir, t.o.Entries-t.entries+1)
	if errors.Is(err, ErrLimit) {
		return fmt.Errorf("more than %d entries (max_pull_entries): %w", t.o.Entries, ErrLimit)
	}
	if err != nil {
		return fmt.Errorf("directory %s: %w", errdefs.Quote("/"+dirPath), err)
	}
	for _, e := range ents {
		if err := tarx.CheckName(e.Name); err != nil {
			return fmt.Errorf("directory %s: %v: %w", errdefs.Quote("/"+dirPath), errdefs.Message(err), ErrCorrupt)
		}
		p := e.Name
		if dirPath != "" {
			p = dirPath + "/" + e.Name
		}
		if len(p) > tarx.MaxPath {
			return fmt.Errorf("path %s: longer than %d bytes: %w", errdefs.Quote(p), tarx.MaxPath, ErrLimit)
		}
		if t.skip(p) {
			continue
		}
		in, err := t.f.Inode(e.Ino)
		if err != nil {
			return fmt.Errorf("%s: %w", errdefs.Quote("/"+p), err)
		}
		if err := t.entry(p, in); err != nil {
			return err
		}
	}
	return nil
}

func (t *treeWriter) skip(p string) bool {
	if !t.o.Root && p == "lost+found" {
		return true
	}
	for _, pat := range t.o.Skip {
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
	}
	return false
}

func (t *treeWriter) entry(p string, in *Inode) error {
	hdr := &tar.Header{
		Name:    p,
		Mode:    int64(in.Mode & 0o7777),
		ModTime: time.Unix(in.Mtime, 0),
		Format:  tar.FormatPAX,
	}
	if t.o.Root {
		hdr.Uid, hdr.Gid = int(in.UID), int(in.GID)
	}
	typ := in.Type()
	if t.o.Root && typ != TypeDir && in.Links > 1 {
		if first, ok := t.links[in.Ino]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return t.write(hdr, nil)
		}
		t.links[in.Ino] = p
	}
	switch typ {
	case TypeDir:
		if t.dirs[in.Ino] {
			return fmt.Errorf("directory %s: inode %d seen twice (a loop): %w", errdefs.Quote("/"+p), in.Ino, ErrCorrupt)
		}
		t.dirs[in.Ino] = true
		hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		if err := t.write(hdr, nil); err != nil {
			return err
		}
		return t.dir(p, in)
	case TypeReg:
		if in.Size > t.o.Bytes-t.bytes {
			return fmt.Errorf("file %s: %d bytes would bring what is read past %d bytes (max_pull_bytes, or the disk's own size): %w", errdefs.Quote("/"+p), in.Size, t.o.Bytes, ErrLimit)
		}
		t.bytes += in.Size
		r, err := t.f.Open(in)
		if err != nil {
			return fmt.Errorf("file %s: %w", errdefs.Quote("/"+p), err)
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, in.Size
		return t.write(hdr, r)
	case TypeLink:
		target, err := t.f.Readlink(in, tarx.MaxLinkTarget)
		if err != nil {
			return fmt.Errorf("symlink %s: %w", errdefs.Quote("/"+p), err)
		}
		if target == "" || strings.ContainsRune(target, 0) {
			return fmt.Errorf("symlink %s: empty target or NUL in it: %w", errdefs.Quote("/"+p), ErrCorrupt)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return t.write(hdr, nil)
	case TypeChr, TypeBlk, TypeFIFO:
		if !t.o.Root {
			t.skipped.Special++
			return nil
		}
		hdr.Typeflag = map[uint16]byte{TypeChr: tar.TypeChar, TypeBlk: tar.TypeBlock, TypeFIFO: tar.TypeFifo}[typ]
		if typ != TypeFIFO {
			hdr.Devmajor, hdr.Devminor = devNumbers(in)
		}
		return t.write(hdr, nil)
	case TypeSock:
		t.skipped.Special++
		return nil
	default:
		return fmt.Errorf("%s: inode %d of unknown type 0%o: %w", errdefs.Quote("/"+p), in.Ino, typ, ErrCorrupt)
	}
}

func (t *treeWriter) write(hdr *tar.Header, r io.Reader) error {
	if t.entries++; t.entries > t.o.Entries {
		return fmt.Errorf("more than %d entries (max_pull_entries): %w", t.o.Entries, ErrLimit)
	}
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	n, err := io.Copy(t.tw, r)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("file %s: read %d of %d bytes: %w", errdefs.Quote("/"+hdr.Name), n, hdr.Size, ErrCorrupt)
	}
	return err
}

// devNumbers decodes a device inode's numbers, kept where its first
// blocks would be: the old 8:8 form in the first word, else the new form
// in the second.
func devNumbers(in *Inode) (int64, int64) {
	old := uint32(in.Block[0]) | uint32(in.Block[1])<<8
	if old != 0 {
		return int64(old >> 8 & 0xff), int64(old & 0xff)
	}
	n := uint32(in.Block[4]) | uint32(in.Block[5])<<8 | uint32(in.Block[6])<<16 | uint32(in.Block[7])<<24
	return int64(n & 0xfff00 >> 8), int64(n&0xff | n>>12&0xfff00)
}
