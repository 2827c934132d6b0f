package layout

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMakePrivate(t *testing.T) {
	root := t.TempDir()
	os.Chmod(root, 0o755)
	os.MkdirAll(filepath.Join(root, "kernels/k/modules"), 0o755)
	os.WriteFile(filepath.Join(root, "kernels/k/vmlinux"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(root, "kernels/k/tool"), []byte("t"), 0o755)
	os.Chmod(filepath.Join(root, "kernels/k/tool"), 0o755|os.ModeSetuid)
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("o"), 0o644)
	os.Symlink(outside, filepath.Join(root, "link"))

	if err := MakePrivate(root); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		"":                  0o700 | os.ModeDir,
		"kernels/k/modules": 0o700 | os.ModeDir,
		"kernels/k/vmlinux": 0o600,
		"kernels/k/tool":    0o700 | os.ModeSetuid,
	} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil || fi.Mode()&(os.ModePerm|os.ModeDir|os.ModeSetuid) != want {
			t.Errorf("%s: %v, %v; want %v", p, fi.Mode(), err, want)
		}
	}
	// A link is not followed: what it points to is not the state's.
	if fi, _ := os.Stat(outside); fi.Mode().Perm() != 0o644 {
		t.Errorf("the link's target became %v", fi.Mode())
	}
}
