package vm

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Root disk files in a VM's directory; which one exists says how the
// disk was made.
const (
	rootRaw   = "root.ext4"  // a reflink (or, last resort, a copy) of the image
	rootQcow2 = "root.qcow2" // a qcow2 overlay whose backing file is the image
)

// makeRootDisk gives a VM its own copy-on-write view of base, whose file
// system already has the VM's disk size (see baseFor). In order of
// preference, all measured in bench/:
//   - a reflink, where the state directory's file system shares blocks
//     (btrfs, xfs): constant time, a raw file any VMM can use;
//   - a qcow2 overlay, when the driver layers disks itself (qemu): about
//     20 ms whatever the size;
//   - a sparse copy: time grows with the image's data, the last resort.
func makeRootDisk(ctx context.Context, drv vmm.Driver, base, dir string) (vmm.Disk, error) {
	raw := filepath.Join(dir, rootRaw)
	if ok, err := reflink(base, raw); err != nil {
		return vmm.Disk{}, err
	} else if ok {
		return vmm.Disk{ID: "root", Path: raw, Format: "raw"}, nil
	}
	if drv.Features().Overlays {
		return drv.Overlay(ctx, base, "raw", filepath.Join(dir, rootQcow2))
	}
	if err := sparseCopy(base, raw); err != nil {
		return vmm.Disk{}, err
	}
	return vmm.Disk{ID: "root", Path: raw, Format: "raw"}, nil
}

// baseFor returns a file holding image's file system at exactly size
// bytes: the image's own disk when it has that size (images are built at
// the default disk size), else a copy resized offline, made once per
// size and kept beside the image (removed with it) for every later VM of
// that size. resize2fs is needed because the file systems banger writes
// cannot be resized online by the guest's kernel (sparse_super2).
func (s *Service) baseFor(ctx context.Context, im api.Image, size int64, p operation.Progress) (string, error) {
	st, err := os.Stat(im.Disk)
	if err != nil {
		return "", fmt.Errorf("image %s disk: %w", im.Name, err)
	}
	if st.Size() == size {
		return im.Disk, nil
	}
	path := filepath.Join(filepath.Dir(im.Disk), fmt.Sprintf("rootfs-%dM.ext4", size>>20))
	_, err = s.once(ctx, path, func() error {
		if size < st.Size() {
			// Some room beyond the bare minimum, or the guest starts full.
			if min, err := ext4.MinSize(ctx, s.d.Runner, im.Disk); err == nil && size < min+64<<20 {
				return fmt.Errorf("--disk %s is too small for image %s, whose files need at least %s: %w",
					humanize.IBytes(uint64(size)), im.Name, humanize.IBytes(uint64(min+64<<20)), errdefs.ErrInvalid)
			}
		}
		p.Stage("disk", "making a %s file system of image %s (once for this size; later VMs of this size share it)", humanize.IBytes(uint64(size)), im.Name)
		began := time.Now()
		tmp := filepath.Join(s.d.Layout.Staging(), fmt.Sprintf("rootfs-%s-%dM.ext4", im.Name, size>>20))
		os.Remove(tmp)
		defer os.Remove(tmp)
		if ok, err := reflink(im.Disk, tmp); err != nil {
			return err
		} else if !ok {
			if err := sparseCopy(im.Disk, tmp); err != nil {
				return err
			}
		}
		if err := ext4.Resize(ctx, s.d.Runner, tmp, size); err != nil {
			return fmt.Errorf("resize image %s's file system to %s: %w", im.Name, humanize.IBytes(uint64(size)), err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("keep resized image: %w", err)
		}
		s.d.Log.Info("made a resized base disk", "image", im.Name, "size", size, "took", time.Since(began))
		return nil
	})
	if err != nil {
		return "", err
	}
	return path, nil
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
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
