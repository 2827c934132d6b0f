// Package ext4 writes ext4 disk images from tar streams without mounting
// anything: a streaming tar-to-ext4 writer (hcsshim's tar2ext4) lays out
// the file system, then e2fsprogs, through the CommandRunner, give it
// headroom and a journal.
package ext4

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// MaxDiskSize bounds an image disk.
const MaxDiskSize = 64 << 30

// Builder writes ext4 images.
type Builder struct {
	Runner runner.Runner
	// MinSize is the smallest file system an image gets: the default VM
	// disk size, so that a default VM's disk is a thin overlay of the
	// image with that much room. The space is holes in the file until a
	// VM writes to it.
	MinSize int64
}

// Headroom is the free space an image gets beyond its content at least: a
// quarter of it, at least 64 MiB.
func Headroom(content int64) int64 {
	return max(content/4, 64<<20)
}

// FromTar writes the tar stream r as an ext4 image at dest and returns the
// image's size.
func (b Builder) FromTar(ctx context.Context, r io.Reader, dest string) (int64, error) {
	f, err := os.OpenFile(dest, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create disk: %w", err)
	}
	// No inline data: the guest kernel (6.1) rewriting a small file that
	// the writer stored inline left the inode flagged inline without its
	// system.data attribute, which e2fsck reports as an error (seen on
	// /etc/hostname after one boot). A tiny file costs a block instead.
	err = tar2ext4.ConvertTarToExt4(operation.NewReader(ctx, r, 0, nil), f, tar2ext4.MaximumDiskSize(MaxDiskSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("write ext4: %w", err)
	}
	return b.Finish(ctx, dest)
}

// Finish gives an image its headroom and a journal, and checks it.
func (b Builder) Finish(ctx context.Context, dest string) (int64, error) {
	fi, err := os.Stat(dest)
	if err != nil {
		return 0, err
	}
	// Grown offline, here, because the writer's file systems cannot be
	// grown online (sparse_super2, which the kernel refuses to resize):
	// resize2fs writes only the new groups' metadata, about 0.3 s and
	// 30 MiB of blocks for 8 GiB.
	size := max(fi.Size()+Headroom(fi.Size()), b.MinSize)
	size = (size + 4095) &^ 4095
	if err := Resize(ctx, b.Runner, dest, size); err != nil {
		return 0, fmt.Errorf("grow disk: %w", err)
	}
	// The streaming writer marks its file systems read-only (a
	// ro_compat feature): a VM's disk must be writable, and journaled.
	if _, err := b.Runner.Run(ctx, runner.Cmd{Name: "tune2fs", Args: []string{"-O", "^read-only,has_journal", dest}}); err != nil {
		return 0, fmt.Errorf("make the disk writable and add a journal: %w", err)
	}
	if err := b.Check(ctx, dest); err != nil {
		return 0, err
	}
	return size, nil
}

// Grow gives an adopted disk (a bundle's, a registered one) the file
// system size images are built with, MinSize, when it is smaller, so that
// a default VM's disk is an overlay of it from the first VM on. It is
// offline and writes only the new groups' metadata.
func (b Builder) Grow(ctx context.Context, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() >= b.MinSize {
		return nil
	}
	if err := Resize(ctx, b.Runner, path, b.MinSize); err != nil {
		return fmt.Errorf("grow file system to %d MiB: %w", b.MinSize>>20, err)
	}
	return nil
}

// Resize sets the file system in the file at path, unmounted, to size
// bytes (a multiple of 4 KiB): the file is extended before resize2fs
// grows it, and cut after resize2fs shrinks it.
func Resize(ctx context.Context, r runner.Runner, path string, size int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if size > fi.Size() {
		if err := os.Truncate(path, size); err != nil {
			return err
		}
	}
	if _, err := r.Run(ctx, runner.Cmd{Name: "resize2fs", Args: []string{"-f", path, fmt.Sprintf("%dK", size>>10)}}); err != nil {
		return err
	}
	return os.Truncate(path, size)
}

// MinSize is the smallest size resize2fs could shrink the file system at
// path to.
func MinSize(ctx context.Context, r runner.Runner, path string) (int64, error) {
	out, err := r.Run(ctx, runner.Cmd{Name: "resize2fs", Args: []string{"-P", path}})
	if err != nil {
		return 0, err
	}
	_, n, ok := strings.Cut(string(out), "minimum size of the filesystem:")
	if !ok {
		return 0, fmt.Errorf("resize2fs -P: %q", out)
	}
	blocks, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("resize2fs -P: %q", out)
	}
	return blocks * 4096, nil
}

// SpareDir is where WorkDisk's padding entries go; it is gone from the
// finished disk.
const SpareDir = ".banger-spare-inodes"

// WorkDisk writes the tar stream r (which must end with SpareDir's
// padding, see SpareEntries) as a writable ext4 disk of at least size
// bytes at dest: streamed like an image, without inline data (debugfs
// 1.47.0 dumps inline files padded with NULs, and work disks are read
// back with debugfs), and with the padding removed. The padding is what
// gives the disk inodes to work with: the streaming writer sizes inode
// tables to what it was given, and resize2fs gives new groups the same
// count per group.
//
// spares is called once the writer is done with r: it says how many
// padding entries the stream held, or why the stream failed.
func (b Builder) WorkDisk(ctx context.Context, r io.Reader, dest string, spares func() (int, error)) (int64, error) {
	f, err := os.OpenFile(dest, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create disk: %w", err)
	}
	err = tar2ext4.ConvertTarToExt4(operation.NewReader(ctx, r, 0, nil), f, tar2ext4.MaximumDiskSize(MaxDiskSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	n, serr := spares()
	if serr != nil {
		return 0, serr
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("write ext4: %w", err)
	}
	if n > 0 {
		var cmds strings.Builder
		for i := range n {
			fmt.Fprintf(&cmds, "rm /%s/%d\n", SpareDir, i)
		}
		fmt.Fprintf(&cmds, "rmdir /%s\n", SpareDir)
		script := dest + ".debugfs"
		if err := os.WriteFile(script, []byte(cmds.String()), 0o600); err != nil {
			return 0, err
		}
		defer os.Remove(script)
		if _, err := b.Runner.Run(ctx, runner.Cmd{Name: "debugfs", Args: []string{"-w", "-f", script, dest}}); err != nil {
			return 0, fmt.Errorf("free the spare inodes: %w", err)
		}
	}
	return b.Finish(ctx, dest)
}

// SpareEntries is how many empty files WorkDisk's stream should end with,
// for a disk whose content is bytes in files and directories entries:
// enough that each block group of the content gets a full inode table
// (8192, one per 16 KiB, as mke2fs gives), which groups added later copy.
func SpareEntries(bytes int64, entries int) int {
	groups := (bytes+int64(entries)*4096)/(96<<20) + 1
	return max(0, int(groups)*8192-entries)
}

// Check runs a read-only e2fsck over the image.
func (b Builder) Check(ctx context.Context, path string) error {
	if _, err := b.Runner.Run(ctx, runner.Cmd{Name: "e2fsck", Args: []string{"-fn", path}}); err != nil {
		return fmt.Errorf("file system check of %s failed: %w: %w", path, err, errdefs.ErrInvalid)
	}
	return nil
}
