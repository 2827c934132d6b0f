package ext4

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/testkit"
)

// TestFromTar builds a real image with real e2fsprogs; it needs no root.
func TestFromTar(t *testing.T) {
	testkit.NeedTools(t, "e2fsprogs", "resize2fs", "tune2fs", "e2fsck", "debugfs")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/su", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 5, Uid: 0})
	tw.Write([]byte("hello"))
	tw.WriteHeader(&tar.Header{Name: "bin/link", Typeflag: tar.TypeLink, Linkname: "bin/su"})
	tw.WriteHeader(&tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "home/user/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000})
	tw.WriteHeader(&tar.Header{Name: "sh", Typeflag: tar.TypeSymlink, Linkname: "bin/su"})
	tw.Close()
	dest := filepath.Join(t.TempDir(), "rootfs.ext4")
	size, err := Builder{Runner: runner.Exec{}}.FromTar(context.Background(), &buf, dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dest); fi.Size() != size || size < 64<<20 {
		t.Fatalf("size %d, file %d", size, fi.Size())
	}
	out, err := exec.Command("debugfs", "-R", "stat /bin/su", dest).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Mode:  04755") || !strings.Contains(string(out), "Links: 2") {
		t.Fatalf("debugfs stat /bin/su: %v\n%s", err, out)
	}
	out, _ = exec.Command("debugfs", "-R", "stat /home/user", dest).CombinedOutput()
	if !strings.Contains(string(out), "User:  1000") || !strings.Contains(string(out), "Mode:  0700") {
		t.Fatalf("debugfs stat /home/user:\n%s", out)
	}
	out, _ = exec.Command("dumpe2fs", "-h", dest).CombinedOutput()
	if !strings.Contains(string(out), "has_journal") {
		t.Fatalf("no journal:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Filesystem features:") && strings.Contains(line, "read-only") {
			t.Fatalf("disk is marked read-only: %s", line)
		}
	}
}

// Images are built at MinSize, the default VM disk: the room is holes in
// the file, and adopted disks are grown to it too.
func TestMinSizeIsThin(t *testing.T) {
	testkit.NeedTools(t, "e2fsprogs", "resize2fs", "tune2fs", "e2fsck", "mkfs.ext4")
	b := Builder{Runner: runner.Exec{}, MinSize: 2 << 30}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 20})
	tw.Write(bytes.Repeat([]byte("x"), 1<<20))
	tw.Close()
	dest := filepath.Join(t.TempDir(), "rootfs.ext4")
	size, err := b.FromTar(context.Background(), &buf, dest)
	if err != nil {
		t.Fatal(err)
	}
	if size != 2<<30 {
		t.Fatalf("size %d, want the 2 GiB MinSize", size)
	}
	if a := allocated(t, dest); a > 128<<20 {
		t.Errorf("a 2 GiB image of 1 MiB allocates %d MiB: its room is not holes", a>>20)
	}

	adopted := filepath.Join(t.TempDir(), "adopted.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-b", "4096", adopted, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if err := b.Grow(context.Background(), adopted); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(adopted); fi.Size() != 2<<30 {
		t.Fatalf("adopted disk is %d bytes", fi.Size())
	}
	if err := b.Check(context.Background(), adopted); err != nil {
		t.Fatal(err)
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
