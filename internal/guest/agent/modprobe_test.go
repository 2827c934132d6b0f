package agent

import (
	"slices"
	"strings"
	"testing"
)

// What modprobe loads for a name, in order: dependencies first, aliases
// followed, built-in modules nothing.
func TestModprobeResolve(t *testing.T) {
	idx, err := readModIndex("testdata/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want []string
		err  string
	}{
		{"overlay", []string{"kernel/fs/overlayfs/overlay.ko"}, ""},
		{"fs-overlay", []string{"kernel/fs/overlayfs/overlay.ko"}, ""},
		{"char-major-10-229", []string{"kernel/fs/fuse/fuse.ko"}, ""},
		{"br-netfilter", []string{"kernel/net/llc/llc.ko", "kernel/net/802/stp.ko", "kernel/net/bridge/bridge.ko", "kernel/net/bridge/br_netfilter.ko"}, ""},
		{"rtnl-link-veth", []string{"kernel/drivers/net/veth.ko"}, ""},
		{"ext4", nil, ""},
		{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", nil, ""},
		{"nosuch", nil, "not found"},
		{"../../etc/passwd", nil, "not found"},
	} {
		got, err := idx.resolve(tc.name)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := readModIndex(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no modules index") {
		t.Errorf("no index: %v", err)
	}
}
