package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

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
	_, err = s.boot.Once(ctx, path, func() error {
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
		if ok, err := vmdisk.Reflink(im.Disk, tmp); err != nil {
			return err
		} else if !ok {
			if err := vmdisk.SparseCopy(im.Disk, tmp); err != nil {
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
