// Package sparse is how a file with holes (a disk image) crosses the
// daemon's socket as its data only: records of a big-endian uint64
// offset, a uint64 length and that many bytes, in increasing order, ended
// by a record of length 0 whose offset is the file's size.
package sparse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// MaxSize bounds the size a sparse stream may claim (its holes cost
// nothing, but a file system still has to hold the file).
const MaxSize = 1 << 40

// DataExtents lists the (offset, length) pieces of f that hold data,
// skipping holes; where the file system cannot tell, the whole file.
func DataExtents(f *os.File, size int64) ([][2]int64, error) {
	var exts [][2]int64
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return [][2]int64{{0, size}}, nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return [][2]int64{{0, size}}, nil
		}
		hole = min(hole, size)
		exts = append(exts, [2]int64{data, hole - data})
		off = hole
	}
	return exts, nil
}

// Write writes the extents of f as a sparse stream.
func Write(w io.Writer, f *os.File, exts [][2]int64, size int64) error {
	var rec [16]byte
	for _, e := range exts {
		binary.BigEndian.PutUint64(rec[:8], uint64(e[0]))
		binary.BigEndian.PutUint64(rec[8:], uint64(e[1]))
		if _, err := w.Write(rec[:]); err != nil {
			return err
		}
		n, err := io.Copy(w, io.NewSectionReader(f, e[0], e[1]))
		if err != nil {
			return err
		}
		if n != e[1] {
			return fmt.Errorf("%s changed while it was sent", f.Name())
		}
	}
	binary.BigEndian.PutUint64(rec[:8], uint64(size))
	binary.BigEndian.PutUint64(rec[8:], 0)
	_, err := w.Write(rec[:])
	return err
}

// Unpack writes a sparse stream read from r into f, leaving holes between
// its extents, and returns the file's size. The stream is untrusted: extents
// out of order or past MaxSize are refused.
func Unpack(r io.Reader, f *os.File) (int64, error) {
	var end int64
	for {
		var rec [16]byte
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return 0, fmt.Errorf("sparse stream: cut short: %w", errdefs.ErrInvalid)
		}
		off, n := int64(binary.BigEndian.Uint64(rec[:8])), int64(binary.BigEndian.Uint64(rec[8:]))
		if off < end || off > MaxSize || n < 0 || n > MaxSize-off {
			return 0, fmt.Errorf("sparse stream: extent at %d of %d bytes is out of order or too large: %w", off, n, errdefs.ErrInvalid)
		}
		if n == 0 {
			return off, nil
		}
		if _, err := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(r, n)); err != nil {
			return 0, err
		}
		if fi, err := f.Stat(); err != nil || fi.Size() < off+n {
			return 0, fmt.Errorf("sparse stream: extent at %d cut short: %w", off, errdefs.ErrInvalid)
		}
		end = off + n
	}
}
