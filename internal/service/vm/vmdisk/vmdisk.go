// Package vmdisk makes and finds the disk files in a VM's directory:
// its root disk (a reflink, a qcow2 overlay or a sparse copy of a base),
// the links to a template's or snapshot's disks it is layered over, and
// the empty placeholder that stands where a saved guest had a work disk.
// Which file exists says how the disk was made.
package vmdisk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/vmm"
)

// Root disk files in a VM's directory; which one exists says how the
// disk was made.
const (
	RootRaw   = "root.ext4"  // a reflink (or, last resort, a copy) of the image
	RootQcow2 = "root.qcow2" // a qcow2 overlay whose backing file is the image
)

// Files a VM resumed from a template has beside its overlay.
const (
	// TemplateBase links the template's root disk into the VM's own
	// directory, and the overlay is made over the link: the template can
	// be removed or replaced while the VM lives on.
	TemplateBase = "template-base"
	// EmptyWork stands in the template's work disk place for a VM without
	// one: the saved guest has a device there.
	EmptyWork = "no-work.raw"
	// PlaceholderBytes is the empty work disk's size.
	PlaceholderBytes = 1 << 20
)

// ModulesID is the kernel's modules disk's ID: the last disk, read-only,
// shared by every VM of the kernel and never copied into a snapshot.
const ModulesID = "modules"

// Modules returns the modules disk among disks.
func Modules(disks []vmm.Disk) (vmm.Disk, bool) {
	for _, d := range disks {
		if d.ID == ModulesID {
			return d, true
		}
	}
	return vmm.Disk{}, false
}

// SnapshotBase links the backing file of a snapshot's root disk into a
// fork's directory; the fork's copy of the root disk names it.
const SnapshotBase = "snapshot-base"

// Make gives a VM its own copy-on-write view of base, whose file
// system already has the VM's disk size (the VM service makes one per size). In order of
// preference, all measured in bench/:
//   - a reflink, where the state directory's file system shares blocks
//     (btrfs, xfs): constant time, a raw file any VMM can use;
//   - a qcow2 overlay, when the driver layers disks itself (qemu): about
//     20 ms whatever the size;
//   - a sparse copy: time grows with the image's data, the last resort.
func Make(ctx context.Context, drv vmm.Driver, base, dir string) (vmm.Disk, error) {
	raw := filepath.Join(dir, RootRaw)
	if ok, err := Reflink(base, raw); err != nil {
		return vmm.Disk{}, err
	} else if ok {
		return vmm.Disk{ID: "root", Path: raw, Format: "raw"}, nil
	}
	if drv.Features().Overlays {
		return drv.Overlay(ctx, base, "raw", filepath.Join(dir, RootQcow2))
	}
	if err := SparseCopy(base, raw); err != nil {
		return vmm.Disk{}, err
	}
	return vmm.Disk{ID: "root", Path: raw, Format: "raw"}, nil
}

// Root finds the root disk Make made.
func Root(dir string) (vmm.Disk, error) {
	for _, d := range []vmm.Disk{
		{ID: "root", Path: filepath.Join(dir, RootQcow2), Format: "qcow2"},
		{ID: "root", Path: filepath.Join(dir, RootRaw), Format: "raw"},
	} {
		if _, err := os.Stat(d.Path); err == nil {
			return d, nil
		}
	}
	return vmm.Disk{}, fmt.Errorf("root disk missing in %s", dir)
}

// Reflink clones src to dst sharing blocks; false when the file system
// cannot (dst is then not left behind).
func Reflink(src, dst string) (bool, error) {
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

// SparseCopy copies src to dst, data extents only: holes (most of a
// fresh image's free space) stay holes, as with cp --sparse.
func SparseCopy(src, dst string) error {
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

func Copy(src, dst string) error {
	if ok, err := Reflink(src, dst); err != nil {
		return err
	} else if ok {
		return nil
	}
	if err := SparseCopy(src, dst); err != nil {
		return fmt.Errorf("copy %s: %w", filepath.Base(src), err)
	}
	return nil
}

func Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Placeholder makes an empty, sparse raw disk.
func Placeholder(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(PlaceholderBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// RemoveRoot removes a VM's root disk, whichever way it was made.
func RemoveRoot(dir string) error {
	for _, f := range []string{RootQcow2, RootRaw, TemplateBase, EmptyWork} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
