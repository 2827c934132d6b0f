package initramfs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestClosure(t *testing.T) {
	mods := map[string]Module{}
	deps := map[string][]string{
		"ext4":         {"jbd2", "mbcache", "crc16"},
		"jbd2":         {},
		"mbcache":      {},
		"crc16":        {},
		"virtio_blk":   {"virtio_ring"},
		"virtio_net":   {"net_failover", "virtio_ring"},
		"net_failover": {"failover"},
		"failover":     {},
		"virtio_ring":  {},
		"unrelated":    {},
	}
	for n := range deps {
		mods[n] = Module{Name: n, Path: "kernel/" + n + ".ko"}
	}
	got, err := Closure(mods, map[string]bool{"virtio_ring": true}, []string{"virtio_blk", "virtio_net", "ext4", "not_in_kernel"},
		func(m Module) ([]string, error) { return deps[m.Name], nil })
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range got {
		names = append(names, m.Name)
	}
	want := []string{"virtio_blk", "failover", "net_failover", "virtio_net", "crc16", "jbd2", "mbcache", "ext4"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("order = %v, want %v (dependencies first, built-ins and unwanted left out)", names, want)
	}

	deps["ext4"] = []string{"missing_dep"}
	if _, err := Closure(mods, nil, []string{"ext4"}, func(m Module) ([]string, error) { return deps[m.Name], nil }); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("missing dependency: %v", err)
	}
	deps["jbd2"], deps["ext4"] = []string{"ext4"}, []string{"jbd2"}
	if _, err := Closure(mods, nil, []string{"ext4"}, func(m Module) ([]string, error) { return deps[m.Name], nil }); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
}

func readCpio(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	r := cpio.NewReader(bytes.NewReader(b))
	out := map[string][]byte{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		out[h.Name] = body
		if h.Name == "init" && h.Mode.Perm() != 0o755 {
			t.Errorf("init mode %v", h.Mode)
		}
	}
}

func TestBuildWithoutModules(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("\x7fELF agent"), 0o755)
	var buf bytes.Buffer
	mods, err := Build(&buf, agent, "")
	if err != nil || len(mods) != 0 {
		t.Fatalf("%v %v", mods, err)
	}
	files := readCpio(t, buf.Bytes())
	if string(files["init"]) != "\x7fELF agent" {
		t.Fatalf("init = %q", files["init"])
	}
	if _, ok := files[ModulesList]; !ok {
		t.Fatal("no module list")
	}
}

func TestStripSignature(t *testing.T) {
	body := []byte("\x7fELF module body")
	sig := bytes.Repeat([]byte{0xAB}, 300)
	info := []byte{0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 44} // PKCS#7, sig_len 300
	signed := append(append(append(append([]byte{}, body...), sig...), info...), sigMagic...)
	for _, tt := range []struct {
		name string
		in   []byte
		want []byte
	}{
		{"signed", signed, body},
		{"unsigned", body, body},
		{"signature longer than the file", append(append(append([]byte{}, body...), []byte{0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0}...), sigMagic...), nil},
		{"only the magic", []byte(sigMagic), []byte(sigMagic)},
	} {
		got := StripSignature(tt.in)
		want := tt.want
		if want == nil {
			want = tt.in
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, want)
		}
	}
}
