// Package bzimage turns a compressed x86 Linux kernel (bzImage, as found in
// /boot/vmlinuz-*) into the uncompressed ELF vmlinux that Firecracker and
// qemu's PVH entry boot.
//
// The boot protocol's setup header (Documentation/arch/x86/boot.rst) gives
// the offset and length of the compressed payload, so no scanning for
// magic numbers is needed.
package bzimage

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/xi2/xz"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Kind says what a kernel file is.
type Kind int

const (
	Unknown Kind = iota
	ELF          // an uncompressed vmlinux
	BzImage      // an x86 boot-protocol image
)

var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// Detect reads the first bytes of a kernel file and says what it is.
func Detect(r io.ReaderAt) Kind {
	var head [0x210]byte
	n, _ := r.ReadAt(head[:], 0)
	if n >= 4 && bytes.Equal(head[:4], elfMagic) {
		return ELF
	}
	if n >= 0x206 && string(head[0x202:0x206]) == "HdrS" {
		return BzImage
	}
	return Unknown
}

// IsELF reports whether the file at path starts like an ELF executable.
func IsELF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return Detect(f) == ELF
}

// Payload locates the compressed kernel inside a bzImage and names its
// compression.
func Payload(r io.ReaderAt) (offset, length int64, compression string, err error) {
	var hdr [0x260]byte
	if n, _ := r.ReadAt(hdr[:], 0); n < len(hdr) {
		return 0, 0, "", fmt.Errorf("kernel image too short for a boot header: %w", errdefs.ErrInvalid)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return 0, 0, "", fmt.Errorf("not a bzImage (no HdrS boot header): %w", errdefs.ErrInvalid)
	}
	version := binary.LittleEndian.Uint16(hdr[0x206:])
	if version < 0x208 {
		return 0, 0, "", fmt.Errorf("boot protocol %d.%02d predates payload fields (2.08): %w", version>>8, version&0xff, errdefs.ErrInvalid)
	}
	setupSects := int64(hdr[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	payloadOffset := int64(binary.LittleEndian.Uint32(hdr[0x248:]))
	payloadLength := int64(binary.LittleEndian.Uint32(hdr[0x24c:]))
	offset = (setupSects+1)*512 + payloadOffset
	var magic [6]byte
	if n, _ := r.ReadAt(magic[:], offset); n < len(magic) || payloadLength == 0 {
		return 0, 0, "", fmt.Errorf("bzImage payload lies outside the file: %w", errdefs.ErrInvalid)
	}
	switch {
	case bytes.HasPrefix(magic[:], []byte{0x1f, 0x8b}):
		compression = "gzip"
	case bytes.HasPrefix(magic[:], []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		compression = "xz"
	case bytes.HasPrefix(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		compression = "zstd"
	case bytes.HasPrefix(magic[:], []byte("BZh")):
		compression = "bzip2"
	case bytes.HasPrefix(magic[:], []byte{0x5d, 0, 0}):
		compression = "lzma"
	case bytes.HasPrefix(magic[:], []byte{0x02, 0x21, 0x4c, 0x18}):
		compression = "lz4"
	case bytes.HasPrefix(magic[:], []byte{0x89, 'L', 'Z', 'O'}):
		compression = "lzo"
	default:
		compression = fmt.Sprintf("unknown (magic %x)", magic[:4])
	}
	return offset, payloadLength, compression, nil
}

// Extract writes the vmlinux inside the bzImage r to w, reading at most
// limit uncompressed bytes, and checks that the result is an ELF file.
func Extract(r io.ReaderAt, w io.Writer, limit int64) (int64, error) {
	offset, length, compression, err := Payload(r)
	if err != nil {
		return 0, err
	}
	// Every compression but gzip (whose trailer carries the size itself) is
	// followed by the uncompressed size, 4 bytes little-endian, appended by
	// the kernel build's size_append: strip it and check it.
	want := int64(-1)
	if compression != "gzip" {
		if length < 8 {
			return 0, fmt.Errorf("bzImage payload too short: %w", errdefs.ErrInvalid)
		}
		var sz [4]byte
		if _, err := r.ReadAt(sz[:], offset+length-4); err != nil {
			return 0, fmt.Errorf("bzImage payload: %w: %w", err, errdefs.ErrInvalid)
		}
		want = int64(binary.LittleEndian.Uint32(sz[:]))
		length -= 4
	}
	src := bufio.NewReaderSize(io.NewSectionReader(r, offset, length), 1<<20)
	var dr io.Reader
	switch compression {
	case "gzip":
		gr, err := gzip.NewReader(src)
		if err != nil {
			return 0, fmt.Errorf("bzImage gzip payload: %w: %w", err, errdefs.ErrInvalid)
		}
		gr.Multistream(false)
		defer gr.Close()
		dr = gr
	case "xz":
		// Kernels compress with the x86 BCJ filter, which xz-embedded's
		// port supports.
		xr, err := xz.NewReader(src, 0)
		if err != nil {
			return 0, fmt.Errorf("bzImage xz payload: %w: %w", err, errdefs.ErrInvalid)
		}
		dr = xr
	case "zstd":
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return 0, fmt.Errorf("bzImage zstd payload: %w: %w", err, errdefs.ErrInvalid)
		}
		defer zr.Close()
		dr = zr
	case "bzip2":
		dr = bzip2.NewReader(src)
	default:
		return 0, fmt.Errorf("bzImage compressed with %s is not supported (gzip, xz, zstd and bzip2 are): extract vmlinux yourself (the kernel's scripts/extract-vmlinux) and import it with --kernel: %w", compression, errdefs.ErrInvalid)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(dr, head); err != nil {
		return 0, fmt.Errorf("decompress bzImage payload: %w: %w", err, errdefs.ErrInvalid)
	}
	if !bytes.Equal(head, elfMagic) {
		return 0, fmt.Errorf("bzImage payload is not an ELF vmlinux: %w", errdefs.ErrInvalid)
	}
	if _, err := w.Write(head); err != nil {
		return 0, err
	}
	n, err := io.Copy(w, io.LimitReader(dr, limit))
	n += 4
	if err != nil {
		var perr interface{ Timeout() bool }
		if errors.As(err, &perr) {
			return n, err
		}
		return n, fmt.Errorf("decompress bzImage payload: %w: %w", err, errdefs.ErrInvalid)
	}
	if n > limit {
		return n, fmt.Errorf("vmlinux larger than the %d-byte limit: %w", limit, errdefs.ErrInvalid)
	}
	if want >= 0 && n != want {
		return n, fmt.Errorf("vmlinux is %d bytes, the bzImage says %d: %w", n, want, errdefs.ErrInvalid)
	}
	return n, nil
}
