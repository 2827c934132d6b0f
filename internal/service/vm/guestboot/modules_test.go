package guestboot

import (
	"os"
	"path/filepath"
	"testing"
)

// What a killed build left is removed; finished disks stay.
func TestModulesSweep(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".build-123", "lib", "modules"), 0o755)
	os.WriteFile(filepath.Join(dir, "k-abc.modules.ext4.tmp"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(dir, "k-abc.modules.ext4"), []byte("whole"), 0o600)
	m := &ModulesDisks{Dir: dir}
	if swept := m.Sweep(); len(swept) != 2 {
		t.Errorf("swept %v", swept)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "k-abc.modules.ext4" {
		t.Errorf("left %v", left)
	}
}
