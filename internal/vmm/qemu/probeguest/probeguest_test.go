package probeguest

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

// The committed probe.elf must be what probe.S builds to: nobody edits the
// binary by hand, and a change to the source is not forgotten.
func TestELFIsBuiltFromSource(t *testing.T) {
	testkit.NeedTools(t, "binutils", "as", "ld")
	out := filepath.Join(t.TempDir(), "probe.elf")
	if b, err := exec.Command("./generate.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, ELF) {
		t.Fatal("probe.elf differs from what probe.S builds: run go generate ./internal/vmm/qemu/probeguest")
	}
}

// A PVH loader needs an x86-64 ELF with its entry in a PT_NOTE.
func TestELFHasPVHEntryNote(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(ELF))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 {
		t.Fatalf("machine %v", f.Machine)
	}
	found := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		// namesz 4, descsz 8, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen\0", entry.
		if len(b) >= 24 && b[8] == 18 && string(b[12:15]) == "Xen" {
			entry := uint64(b[16]) | uint64(b[17])<<8 | uint64(b[18])<<16 | uint64(b[19])<<24
			if entry != f.Entry {
				t.Fatalf("PVH entry %#x, ELF entry %#x", entry, f.Entry)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no PVH entry note")
	}
}

func TestStage(t *testing.T) {
	for _, tc := range []struct{ console, want string }{
		{"", ""},
		{"banger-probe: start\n", StageStart},
		{"noise\nbanger-probe: start\nbanger-probe: long mode\n", StageLongMode},
		{"banger-probe: start\r\nbanger-probe: long mode\r\nbanger-probe: memory\r\nbanger-probe: ok\r\n", StageOK},
	} {
		if got := Stage(tc.console); got != tc.want {
			t.Errorf("Stage(%q) = %q, want %q", tc.console, got, tc.want)
		}
	}
}
