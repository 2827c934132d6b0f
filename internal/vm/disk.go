package vm

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/runner"
	"github.com/banger-dev/banger/internal/vmm"
)

// Root disk files in a VM's directory; which one exists says how the
// disk was made.
const (
	rootRaw   = "root.ext4"  // a reflink (or, last resort, a copy) of the image
	rootQcow2 = "root.qcow2" // a qcow2 overlay whose backing file is the image
)

// makeRootDisk gives a VM its own copy-on-write view of image, of size
// bytes. In order of preference, all measured in bench/:
//   - a reflink, where the state directory's file system shares blocks
//     (btrfs, xfs): constant time, a raw file any VMM can use;
//   - a qcow2 overlay, when the driver layers disks itself (qemu): about
//     10 ms whatever the image's size;
//   - a sparse copy: time grows with the image, the last resort.
//
// A disk bigger than its image (--disk) is always raw: the ext4 writer
// banger builds images with uses sparse_super2, which the kernel cannot
// grow online, so the file system is grown here with resize2fs, which
// needs the blocks in a plain file. That copy costs what the image's data
// weighs (holes are kept), once, at create.
func makeRootDisk(ctx context.Context, r runner.Runner, overlays bool, image, dir string, size int64) (vmm.Disk, error) {
	raw := filepath.Join(dir, rootRaw)
	st, err := os.Stat(image)
	if err != nil {
		return vmm.Disk{}, err
	}
	if size > st.Size() {
		if ok, err := reflink(image, raw); err != nil {
			return vmm.Disk{}, err
		} else if !ok {
			if err := sparseCopy(image, raw); err != nil {
				return vmm.Disk{}, err
			}
		}
		if err := os.Truncate(raw, size); err != nil {
			return vmm.Disk{}, fmt.Errorf("grow root disk: %w", err)
		}
		if _, err := r.Run(ctx, runner.Cmd{Name: "resize2fs", Args: []string{"-f", raw}}); err != nil {
			return vmm.Disk{}, fmt.Errorf("grow root file system to %d MiB: %w", size>>20, err)
		}
		return vmm.Disk{ID: "root", Path: raw, Format: "raw"}, nil
	}
	if ok, err := reflink(image, raw); err != nil {
		return vmm.Disk{}, err
	} else if ok {
		if err := os.Truncate(raw, size); err != nil {
			return vmm.Disk{}, fmt.Errorf("grow root disk: %w", err)
		}
		return vmm.Disk{ID: "root", Path: raw, Format: "raw"}, nil
	}
	if overlays {
		q := filepath.Join(dir, rootQcow2)
		_, err := r.Run(ctx, runner.Cmd{Name: "qemu-img", Args: []string{
			"create", "-q", "-f", "qcow2", "-F", "raw", "-b", image, q, strconv.FormatInt(size, 10)}})
		if err != nil {
			return vmm.Disk{}, fmt.Errorf("create root disk overlay: %w", err)
		}
		return vmm.Disk{ID: "root", Path: q, Format: "qcow2"}, nil
	}
	if err := sparseCopy(image, raw); err != nil {
		return vmm.Disk{}, err
	}
	if err := os.Truncate(raw, size); err != nil {
		return vmm.Disk{}, fmt.Errorf("grow root disk: %w", err)
	}
	return vmm.Disk{ID: "root", Path: raw, Format: "raw"}, nil
}

// rootDisk finds the root disk makeRootDisk made.
func rootDisk(dir string) (vmm.Disk, error) {
	for _, d := range []vmm.Disk{
		{ID: "root", Path: filepath.Join(dir, rootQcow2), Format: "qcow2"},
		{ID: "root", Path: filepath.Join(dir, rootRaw), Format: "raw"},
	} {
		if _, err := os.Stat(d.Path); err == nil {
			return d, nil
		}
	}
	return vmm.Disk{}, fmt.Errorf("root disk missing in %s", dir)
}

// reflink clones src to dst sharing blocks; false when the file system
// cannot (dst is then not left behind).
func reflink(src, dst string) (bool, error) {
	in, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false, err
	}
	cerr := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
	out.Close()
	if cerr != nil {
		os.Remove(dst)
		return false, nil
	}
	return true, nil
}

// sparseCopy copies src to dst, data extents only: holes (most of a
// fresh image's free space) stay holes, as with cp --sparse.
func sparseCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := copyExtents(in, out, st.Size()); err != nil {
		out.Close()
		return fmt.Errorf("copy image to root disk: %w", err)
	}
	if err := out.Truncate(st.Size()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func copyExtents(in, out *os.File, size int64) error {
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			return nil // only a hole is left
		}
		if err != nil {
			// No SEEK_DATA here: copy everything.
			in.Seek(0, io.SeekStart)
			out.Seek(0, io.SeekStart)
			_, err := io.Copy(out, in)
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for data < hole {
			roff, woff := data, data
			n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(hole-data), 0)
			if err != nil {
				return err
			}
			if n == 0 {
				return io.ErrUnexpectedEOF
			}
			data += int64(n)
		}
		off = hole
	}
	return nil
}
