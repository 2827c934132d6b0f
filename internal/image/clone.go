package image

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/digest"
)

// cloneFile copies src to the new file dst, sharing blocks (a reflink)
// where the file system can, and returns "sha256:<hex>" of the content.
func cloneFile(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		// No reflink here: io.Copy uses copy_file_range, which keeps holes
		// on most file systems.
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return "", fmt.Errorf("copy %s: %w", src, err)
		}
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return digest.File(dst)
}
