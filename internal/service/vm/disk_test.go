package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/vmm/qemu"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// sparseImage writes a file with data at both ends and a hole between.
func sparseImage(t *testing.T, size int64) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.ext4")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	head := bytes.Repeat([]byte("banger"), 10000)
	f.Write(head)
	f.WriteAt([]byte("tail"), size-4)
	f.Close()
	return path, head
}

func allocated(t *testing.T, path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestSparseCopyKeepsContentAndHoles(t *testing.T) {
	const size = 256 << 20
	src, head := sparseImage(t, size)
	dst := filepath.Join(t.TempDir(), "copy")
	if err := vmdisk.SparseCopy(src, dst); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if int64(len(got)) != size || !bytes.Equal(got[:len(head)], head) || string(got[size-4:]) != "tail" {
		t.Fatalf("copy differs: %d bytes", len(got))
	}
	if a := allocated(t, dst); a > 8<<20 {
		t.Fatalf("copy allocates %d bytes of a %d-byte file with ~64 KiB of data: holes were filled", a, size)
	}
}

func TestMakeRootDisk(t *testing.T) {
	src, _ := sparseImage(t, 64<<20)
	ctx := context.Background()
	tests := []struct {
		name     string
		overlays bool
		want     string // the command run, or "" for none
		format   string
	}{
		// No size: the overlay takes its base's, whose file system is
		// already the VM's size.
		{"qcow2 overlay over the base", true, "qemu-img create -q -f qcow2 -F raw -b " + src + " ", "qcow2"},
		{"no overlays: a sparse copy", false, "", "raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := &runner.Recorder{}
			var drv vmm.Driver = &fakeDriver{}
			if tt.overlays {
				drv = &qemu.Driver{Runner: rec}
			}
			d, err := vmdisk.Make(ctx, drv, src, dir)
			if err != nil {
				t.Fatal(err)
			}
			if d.Format != tt.format {
				t.Fatalf("format %s, want %s", d.Format, tt.format)
			}
			cmds := rec.Calls()
			if tt.want == "" && len(cmds) != 0 || tt.want != "" && (len(cmds) != 1 || !strings.HasPrefix(cmds[0], tt.want) || strings.Count(cmds[0], " ") != strings.Count(tt.want, " ")) {
				t.Fatalf("ran %q, want %q", cmds, tt.want)
			}
			if d.Format == "raw" {
				if st, err := os.Stat(d.Path); err != nil || st.Size() != 64<<20 {
					t.Fatalf("raw disk %v size, want %d (%v)", st, 64<<20, err)
				}
				if found, err := vmdisk.Root(dir); err != nil || found != d {
					t.Fatalf("vmdisk.Root = %+v, %v; want %+v", found, err, d)
				}
			}
		})
	}
}

// counting runs commands for real and counts them.
type counting struct {
	runner.Exec
	n int
}

func (c *counting) Run(ctx context.Context, cmd runner.Cmd) ([]byte, error) {
	c.n++
	return c.Exec.Run(ctx, cmd)
}

// A VM disk of another size than its image's gets a base of that size,
// made once with the real resize2fs, checked clean by e2fsck, shared by
// later VMs of that size; too small a size is refused with what the files
// need, and leaves nothing.
func TestBaseFor(t *testing.T) {
	testkit.NeedTools(t, "e2fsprogs", "mkfs.ext4", "resize2fs", "e2fsck", "dumpe2fs")
	d := &fakeDriver{}
	s, _, lay := newTestService(t, d)
	r := &counting{}
	s.d.Runner = r
	ctx := context.Background()
	imgDir := filepath.Join(lay.Images(), "small")
	os.MkdirAll(imgDir, 0o755)
	content := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(content, 0o755)
	blob := bytes.Repeat([]byte("x"), 20<<20)
	os.WriteFile(filepath.Join(content, "blob"), blob, 0o644)
	disk := filepath.Join(imgDir, "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-b", "4096", "-d", content, disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	im := api.Image{Name: "small", Disk: disk}

	if p, err := s.baseFor(ctx, im, 64<<20, operation.Discard); err != nil || p != disk || r.n != 0 {
		t.Fatalf("at the image's size: %s, %v, %d commands; want the image itself", p, err, r.n)
	}
	p, err := s.baseFor(ctx, im, 256<<20, operation.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 256<<20 || filepath.Dir(p) != imgDir {
		t.Fatalf("base %s: %v, %v", p, st, err)
	}
	if out, err := exec.Command("e2fsck", "-fn", p).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck of the grown base: %v\n%s", err, out)
	}
	out, _ := exec.Command("dumpe2fs", "-h", p).Output()
	if !strings.Contains(string(out), "Block count:              65536") {
		t.Errorf("grown file system is not 256 MiB of 4 KiB blocks:\n%s", out)
	}
	n := r.n
	if again, err := s.baseFor(ctx, im, 256<<20, operation.Discard); err != nil || again != p || r.n != n {
		t.Fatalf("second VM of that size: %s, %v, ran %d more commands", again, err, r.n-n)
	}
	if _, err := s.baseFor(ctx, im, 8<<20, operation.Discard); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "need at least") {
		t.Fatalf("too small: %v", err)
	}
	if ents, _ := os.ReadDir(imgDir); len(ents) != 2 {
		t.Errorf("image directory holds %d files, want the image and one base", len(ents))
	}
	if ents, _ := os.ReadDir(lay.Staging()); len(ents) != 0 {
		t.Errorf("staging left: %v", ents)
	}
}
