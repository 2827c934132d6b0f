package vm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/banger-dev/banger/internal/runner"
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
	if err := sparseCopy(src, dst); err != nil {
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
		size     int64
		want     string // the command run, or "" for none
		format   string
	}{
		{"qcow2 overlay at the image's size", true, 64 << 20, "qemu-img create -q -f qcow2 -F raw -b " + src, "qcow2"},
		{"no overlays: a sparse copy", false, 64 << 20, "", "raw"},
		{"bigger disk: a copy grown by resize2fs", true, 128 << 20, "resize2fs -f", "raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := &runner.Recorder{}
			d, err := makeRootDisk(ctx, rec, tt.overlays, src, dir, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if d.Format != tt.format {
				t.Fatalf("format %s, want %s", d.Format, tt.format)
			}
			cmds := rec.Calls()
			if tt.want == "" && len(cmds) != 0 || tt.want != "" && (len(cmds) != 1 || !strings.HasPrefix(cmds[0], tt.want)) {
				t.Fatalf("ran %q, want %q", cmds, tt.want)
			}
			if d.Format == "raw" {
				if st, err := os.Stat(d.Path); err != nil || st.Size() != tt.size {
					t.Fatalf("raw disk %v size, want %d (%v)", st, tt.size, err)
				}
				if found, err := rootDisk(dir); err != nil || found != d {
					t.Fatalf("rootDisk = %+v, %v; want %+v", found, err, d)
				}
			}
		})
	}
}
