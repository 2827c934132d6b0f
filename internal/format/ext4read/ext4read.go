// Package ext4read reads an ext4 file system that a guest wrote and turns
// it into a tar stream, without the kernel's ext4 driver and without
// e2fsprogs: a guest's disk is hostile input, so it is parsed only by
// this memory-safe code, and only in a sandboxed process without
// privileges (see internal/kit/sandbox and cmd/banger's read-ext4 entry).
//
// It reads what the guest's kernel writes: extents or block maps, linear
// or hashed directories (a hashed directory's blocks are read linearly:
// its index blocks look like empty entries), fast and slow symlinks, the
// 32- and 64-bit layouts. Anything else (inline data, encryption, meta
// block groups, an external journal) is refused with the feature named.
// Every number read from the disk is checked against the disk before it
// is used, and everything a guest can grow (entries, bytes, depth,
// extents) is bounded.
package ext4read

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrCorrupt marks a disk that breaks ext4's rules.
var ErrCorrupt = errors.New("corrupt file system")

// ErrUnsupported marks a feature this reader refuses.
var ErrUnsupported = errors.New("unsupported file system")

const (
	superOffset = 1024
	magic       = 0xEF53

	incompatFiletype   = 0x2
	incompatRecover    = 0x4
	incompatJournalDev = 0x8
	incompatMetaBG     = 0x10
	incompatExtents    = 0x40
	incompat64Bit      = 0x80
	incompatMMP        = 0x100
	incompatFlexBG     = 0x200
	incompatEAInode    = 0x400
	incompatDirData    = 0x1000
	incompatCsumSeed   = 0x2000
	incompatLargeDir   = 0x4000
	incompatInlineData = 0x8000
	incompatEncrypt    = 0x10000
	incompatCasefold   = 0x20000

	// What the reader knows how to read; a journal needing recovery is
	// read as it stands (the last transactions are not replayed).
	incompatKnown = incompatFiletype | incompatRecover | incompatExtents | incompat64Bit |
		incompatMMP | incompatFlexBG | incompatEAInode | incompatCsumSeed | incompatLargeDir | incompatCasefold

	flagExtents    = 0x80000
	flagInlineData = 0x10000000
	flagEncrypt    = 0x800

	extentMagic    = 0xF30A
	maxExtentDepth = 5

	// RootIno is the root directory's inode.
	RootIno = 2
)

// FS is an opened ext4 file system.
type FS struct {
	r          io.ReaderAt
	size       int64 // bytes of the device
	blockSize  int64
	blocks     uint64
	inodes     uint32
	perGroup   uint32
	inodeSize  int64
	descSize   int64
	firstBlock uint64
	groups     uint32
	is64       bool
	tables     []uint64 // inode table block of each group
}

// Open reads the superblock and group descriptors of the ext4 file system
// in r, size bytes long.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, superOffset); err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != magic {
		return nil, fmt.Errorf("no ext4 superblock (bad magic): %w", ErrCorrupt)
	}
	f := &FS{r: r, size: size}
	logBS := le.Uint32(sb[0x18:])
	if logBS > 6 { // 1 KiB << 6 = 64 KiB, ext4's largest block
		return nil, fmt.Errorf("block size 2^%d KiB: %w", logBS, ErrCorrupt)
	}
	f.blockSize = 1024 << logBS
	f.inodes = le.Uint32(sb[0x0:])
	f.blocks = uint64(le.Uint32(sb[0x4:]))
	f.firstBlock = uint64(le.Uint32(sb[0x14:]))
	perGroupBlocks := le.Uint32(sb[0x20:])
	f.perGroup = le.Uint32(sb[0x28:])
	incompat := le.Uint32(sb[0x60:])
	if incompat&^incompatKnown != 0 {
		return nil, fmt.Errorf("feature %s: %w", featureNames(incompat&^incompatKnown), ErrUnsupported)
	}
	f.inodeSize = 128
	if le.Uint32(sb[0x4C:]) >= 1 {
		f.inodeSize = int64(le.Uint16(sb[0x58:]))
	}
	if f.inodeSize < 128 || f.inodeSize > f.blockSize || f.inodeSize&(f.inodeSize-1) != 0 {
		return nil, fmt.Errorf("inode size %d: %w", f.inodeSize, ErrCorrupt)
	}
	f.descSize = 32
	if incompat&incompat64Bit != 0 {
		f.is64 = true
		f.blocks |= uint64(le.Uint32(sb[0x150:])) << 32
		f.descSize = int64(le.Uint16(sb[0xFE:]))
		if f.descSize < 64 || f.descSize > 1024 || f.descSize&(f.descSize-1) != 0 {
			return nil, fmt.Errorf("group descriptor size %d: %w", f.descSize, ErrCorrupt)
		}
	}
	if f.blocks == 0 || uint64(f.blockSize)*f.blocks > uint64(size) {
		return nil, fmt.Errorf("%d blocks of %d bytes do not fit the %d-byte disk: %w", f.blocks, f.blockSize, size, ErrCorrupt)
	}
	if perGroupBlocks == 0 || f.perGroup == 0 || f.inodes == 0 || f.firstBlock >= f.blocks {
		return nil, fmt.Errorf("empty group geometry: %w", ErrCorrupt)
	}
	groups := (f.blocks - f.firstBlock + uint64(perGroupBlocks) - 1) / uint64(perGroupBlocks)
	if groups == 0 || groups > 1<<24 || uint64(f.inodes) > groups*uint64(f.perGroup) {
		return nil, fmt.Errorf("%d groups for %d inodes: %w", groups, f.inodes, ErrCorrupt)
	}
	f.groups = uint32(groups)
	gdt := make([]byte, int64(groups)*f.descSize)
	if _, err := r.ReadAt(gdt, int64(f.firstBlock+1)*f.blockSize); err != nil {
		return nil, fmt.Errorf("read group descriptors: %w", err)
	}
	f.tables = make([]uint64, groups)
	for g := range f.tables {
		d := gdt[int64(g)*f.descSize:]
		t := uint64(le.Uint32(d[0x8:]))
		if f.is64 {
			t |= uint64(le.Uint32(d[0x28:])) << 32
		}
		tableBlocks := (uint64(f.perGroup)*uint64(f.inodeSize) + uint64(f.blockSize) - 1) / uint64(f.blockSize)
		if t == 0 || t+tableBlocks > f.blocks {
			return nil, fmt.Errorf("group %d's inode table at block %d: outside the disk: %w", g, t, ErrCorrupt)
		}
		f.tables[g] = t
	}
	return f, nil
}

func featureNames(bits uint32) string {
	names := map[uint32]string{
		0x1: "compression", incompatJournalDev: "journal_dev", incompatMetaBG: "meta_bg",
		incompatDirData: "dirdata", incompatInlineData: "inline_data", incompatEncrypt: "encrypt",
	}
	s := ""
	for b := uint32(1); b != 0; b <<= 1 {
		if bits&b == 0 {
			continue
		}
		n, ok := names[b]
		if !ok {
			n = fmt.Sprintf("0x%x", b)
		}
		if s != "" {
			s += ","
		}
		s += n
	}
	return s
}

// Inode is what the reader keeps of an inode.
type Inode struct {
	Ino   uint32
	Mode  uint16
	UID   uint32
	GID   uint32
	Size  int64
	Mtime int64
	Links uint16
	Flags uint32
	Block [60]byte
}

// File types, from the mode's top bits.
const (
	TypeMask = 0xF000
	TypeFIFO = 0x1000
	TypeChr  = 0x2000
	TypeDir  = 0x4000
	TypeBlk  = 0x6000
	TypeReg  = 0x8000
	TypeLink = 0xA000
	TypeSock = 0xC000
)

// Type is the inode's file type bits.
func (i *Inode) Type() uint16 { return i.Mode & TypeMask }

// Inode reads inode ino.
func (f *FS) Inode(ino uint32) (*Inode, error) {
	if ino == 0 || ino > f.inodes {
		return nil, fmt.Errorf("inode %d: outside 1..%d: %w", ino, f.inodes, ErrCorrupt)
	}
	g, idx := (ino-1)/f.perGroup, (ino-1)%f.perGroup
	b := make([]byte, 160)
	n := min(int64(len(b)), f.inodeSize)
	if _, err := f.r.ReadAt(b[:n], int64(f.tables[g])*f.blockSize+int64(idx)*f.inodeSize); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", ino, err)
	}
	le := binary.LittleEndian
	in := &Inode{
		Ino:   ino,
		Mode:  le.Uint16(b[0x0:]),
		UID:   uint32(le.Uint16(b[0x2:])) | uint32(le.Uint16(b[0x78:]))<<16,
		GID:   uint32(le.Uint16(b[0x18:])) | uint32(le.Uint16(b[0x7A:]))<<16,
		Size:  int64(uint64(le.Uint32(b[0x4:])) | uint64(le.Uint32(b[0x6C:]))<<32),
		Mtime: int64(int32(le.Uint32(b[0x10:]))),
		Links: le.Uint16(b[0x1A:]),
		Flags: le.Uint32(b[0x20:]),
	}
	copy(in.Block[:], b[0x28:0x28+60])
	if in.Size < 0 {
		return nil, fmt.Errorf("inode %d: negative size: %w", ino, ErrCorrupt)
	}
	if in.Flags&flagEncrypt != 0 {
		return nil, fmt.Errorf("inode %d is encrypted: %w", ino, ErrUnsupported)
	}
	if in.Flags&flagInlineData != 0 {
		return nil, fmt.Errorf("inode %d keeps its data inline: %w", ino, ErrUnsupported)
	}
	return in, nil
}

// extent maps count logical blocks from logical to physical; zero means
// an unwritten extent (reads as zeros).
type extent struct {
	logical, physical, count uint64
	unwritten                bool
}

// extents lists where in's data lives, in logical order. max bounds how
// many extents the tree may hold: no more than the file's own blocks,
// the disk's, or 4M (128 MiB of list), so that a crafted tree costs no
// more than honest data would.
func (f *FS) extents(in *Inode) ([]extent, error) {
	max := min(uint64(in.Size+f.blockSize-1)/uint64(f.blockSize), f.blocks, 1<<22) + 4
	if in.Flags&flagExtents == 0 {
		return f.blockMap(in, max)
	}
	var out []extent
	if err := f.extentNode(in.Block[:], 0, &out, max); err != nil {
		return nil, fmt.Errorf("inode %d's extents: %w", in.Ino, err)
	}
	return out, nil
}

func (f *FS) extentNode(b []byte, level int, out *[]extent, max uint64) error {
	le := binary.LittleEndian
	if len(b) < 12 || le.Uint16(b[0:]) != extentMagic {
		return fmt.Errorf("bad extent header: %w", ErrCorrupt)
	}
	n, depth := int(le.Uint16(b[2:])), int(le.Uint16(b[6:]))
	if 12+12*n > len(b) || depth > maxExtentDepth || level > maxExtentDepth {
		return fmt.Errorf("extent node of %d entries, depth %d: %w", n, depth, ErrCorrupt)
	}
	for i := range n {
		e := b[12+12*i:]
		if depth == 0 {
			l := uint64(le.Uint16(e[4:]))
			unwritten := l > 32768
			if unwritten {
				l -= 32768
			}
			x := extent{
				logical:   uint64(le.Uint32(e[0:])),
				physical:  uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:])),
				count:     l,
				unwritten: unwritten,
			}
			if x.count == 0 || x.physical+x.count > f.blocks || x.physical < f.firstBlock {
				return fmt.Errorf("extent at block %d of %d blocks: outside the disk: %w", x.physical, x.count, ErrCorrupt)
			}
			if k := len(*out); k > 0 && (*out)[k-1].logical+(*out)[k-1].count > x.logical {
				return fmt.Errorf("extents overlap or out of order: %w", ErrCorrupt)
			}
			if uint64(len(*out)) >= max {
				return fmt.Errorf("more extents than the file has blocks: %w", ErrCorrupt)
			}
			*out = append(*out, x)
			continue
		}
		leaf := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		child, err := f.block(leaf)
		if err != nil {
			return err
		}
		if err := f.extentNode(child, level+1, out, max); err != nil {
			return err
		}
	}
	return nil
}

// blockMap reads the pre-extent layout: 12 direct blocks, then single,
// double and triple indirect blocks.
func (f *FS) blockMap(in *Inode, max uint64) ([]extent, error) {
	le := binary.LittleEndian
	var out []extent
	var logical uint64
	per := uint64(f.blockSize / 4)
	add := func(p uint64) error {
		if logical >= max {
			return fmt.Errorf("inode %d maps more blocks than its size: %w", in.Ino, ErrCorrupt)
		}
		if p != 0 {
			if p >= f.blocks || p < f.firstBlock {
				return fmt.Errorf("inode %d: block %d outside the disk: %w", in.Ino, p, ErrCorrupt)
			}
			if k := len(out); k > 0 && out[k-1].logical+out[k-1].count == logical && out[k-1].physical+out[k-1].count == p {
				out[k-1].count++
			} else {
				out = append(out, extent{logical: logical, physical: p, count: 1})
			}
		}
		logical++
		return nil
	}
	var walk func(p uint64, level int) error
	walk = func(p uint64, level int) error {
		if p == 0 {
			span := uint64(1)
			for range level {
				span *= per
			}
			logical += span
			return nil
		}
		if level == 0 {
			return add(p)
		}
		b, err := f.block(p)
		if err != nil {
			return err
		}
		for i := uint64(0); i < per && logical < max; i++ {
			if err := walk(uint64(le.Uint32(b[4*i:])), level-1); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < 15 && logical < max; i++ {
		p := uint64(le.Uint32(in.Block[4*i:]))
		level := 0
		if i >= 12 {
			level = i - 11
		}
		if err := walk(p, level); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (f *FS) block(p uint64) ([]byte, error) {
	if p >= f.blocks || p < f.firstBlock {
		return nil, fmt.Errorf("block %d outside the disk: %w", p, ErrCorrupt)
	}
	b := make([]byte, f.blockSize)
	if _, err := f.r.ReadAt(b, int64(p)*f.blockSize); err != nil {
		return nil, fmt.Errorf("read block %d: %w", p, err)
	}
	return b, nil
}

// Open returns a reader of in's data: Size bytes, holes and unwritten
// extents as zeros.
func (f *FS) Open(in *Inode) (io.Reader, error) {
	ex, err := f.extents(in)
	if err != nil {
		return nil, err
	}
	return &dataReader{f: f, ex: ex, size: in.Size}, nil
}

type dataReader struct {
	f    *FS
	ex   []extent
	off  int64
	size int64
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.off >= d.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), d.size-d.off)]
	bs := d.f.blockSize
	lb := uint64(d.off / bs)
	for len(d.ex) > 0 && d.ex[0].logical+d.ex[0].count <= lb {
		d.ex = d.ex[1:]
	}
	inBlock := d.off % bs
	if len(d.ex) == 0 || d.ex[0].logical > lb || d.ex[0].unwritten {
		// A hole up to the next extent (or the end).
		end := d.size
		if len(d.ex) > 0 {
			if d.ex[0].logical > lb {
				end = min(end, int64(d.ex[0].logical)*bs)
			} else {
				end = min(end, int64(d.ex[0].logical+d.ex[0].count)*bs)
			}
		}
		n := min(int64(len(p)), end-d.off)
		clear(p[:n])
		d.off += int64(n)
		return int(n), nil
	}
	x := d.ex[0]
	end := min(d.size, int64(x.logical+x.count)*bs)
	n := min(int64(len(p)), end-d.off)
	phys := int64(x.physical+(lb-x.logical))*bs + inBlock
	m, err := d.f.r.ReadAt(p[:n], phys)
	d.off += int64(m)
	if err == io.EOF && int64(m) == n {
		err = nil
	}
	return m, err
}

// Dirent is one directory entry.
type Dirent struct {
	Name string
	Ino  uint32
}

// ReadDir lists directory dir, without "." and "..". maxEntries bounds
// the listing.
func (f *FS) ReadDir(dir *Inode, maxEntries int) ([]Dirent, error) {
	if dir.Type() != TypeDir {
		return nil, fmt.Errorf("inode %d is not a directory", dir.Ino)
	}
	r, err := f.Open(dir)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	b := make([]byte, f.blockSize)
	var out []Dirent
	for blk := 0; ; blk++ {
		n, err := io.ReadFull(r, b)
		if err == io.EOF {
			return out, nil
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return nil, err
		}
		if n != len(b) {
			return nil, fmt.Errorf("directory inode %d: size not a whole number of blocks: %w", dir.Ino, ErrCorrupt)
		}
		idx := 0 // the entry's place in its block
		for off := 0; off < len(b); {
			if off+8 > len(b) {
				return nil, fmt.Errorf("block %d: an entry at byte %d runs past the block: %w", blk, off, ErrCorrupt)
			}
			ino := le.Uint32(b[off:])
			recLen := int(le.Uint16(b[off+4:]))
			if recLen == 0 && f.blockSize == 65536 {
				recLen = 65536
			}
			nameLen := int(b[off+6])
			if recLen < 8 || recLen%4 != 0 || off+recLen > len(b) || 8+nameLen > recLen {
				return nil, fmt.Errorf("block %d: an entry of %d bytes at byte %d (an entry is 8 bytes or more, a multiple of 4, holds its name and ends within its block): %w", blk, recLen, off, ErrCorrupt)
			}
			if ino != 0 && nameLen > 0 {
				name := string(b[off+8 : off+8+nameLen])
				// A directory's own "." and ".." are its first two entries;
				// anywhere else they are names, which the caller refuses.
				own := blk == 0 && (idx == 0 && name == "." || idx == 1 && name == "..")
				if !own {
					if len(out) >= maxEntries {
						return nil, fmt.Errorf("directory inode %d holds more than %d entries: %w", dir.Ino, maxEntries, ErrLimit)
					}
					out = append(out, Dirent{Name: name, Ino: ino})
				}
			}
			idx++
			off += recLen
		}
	}
}

// ErrLimit marks a bound the file system went past.
var ErrLimit = errors.New("over a bound")

// Readlink returns a symlink's target.
func (f *FS) Readlink(in *Inode, maxLen int64) (string, error) {
	if in.Size > maxLen {
		return "", fmt.Errorf("symlink inode %d: a %d-byte target, at most %d: %w", in.Ino, in.Size, maxLen, ErrLimit)
	}
	// A fast symlink keeps its target in the block map's place.
	if in.Flags&flagExtents == 0 && in.Size < 60 {
		return string(in.Block[:in.Size]), nil
	}
	r, err := f.Open(in)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(r)
	return string(b), err
}
