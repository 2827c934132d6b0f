package doctor

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/api"
)

type fakeFI struct{ fs.FileInfo }

func fakeHost(have map[string]bool, free uint64, osID string) Host {
	return Host{
		LookPath: func(p string) (string, error) {
			if have[p] {
				return "/usr/bin/" + p, nil
			}
			return "", errors.New("not found")
		},
		Stat: func(p string) (fs.FileInfo, error) {
			if have[p] {
				return fakeFI{}, nil
			}
			return nil, fs.ErrNotExist
		},
		OpenRW: func(p string) error {
			if have[p+":rw"] {
				return nil
			}
			return fs.ErrPermission
		},
		FreeBytes: func(string) (uint64, error) { return free, nil },
		OSRelease: func() map[string]string { return map[string]string{"ID": osID} },
	}
}

func find(cs []Check, name string) Check {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return Check{}
}

func TestDoctor(t *testing.T) {
	all := map[string]bool{"/": true, "/var": true, "qemu-system-x86_64": true, "mkfs.ext4": true, "e2fsck": true, "resize2fs": true, "qemu-img": true,
		"/dev/kvm": true, "/dev/kvm:rw": true, "/dev/net/tun": true, "nft": true, "ip": true}
	cs := Run(fakeHost(all, 100<<30, "debian"), "/var/lib/banger")
	if Failed(cs) {
		t.Fatalf("healthy host failed: %+v", cs)
	}
	if c := find(cs, "free space"); !strings.Contains(c.Detail, "100 GiB free in /var") {
		t.Errorf("free space detail = %q", c.Detail)
	}

	cs = Run(fakeHost(map[string]bool{"/": true, "/dev/kvm": true}, 1<<30, "ubuntu"), "/var/lib/banger")
	if !Failed(cs) {
		t.Fatal("host without qemu passed")
	}
	if c := find(cs, "qemu-system-x86_64"); c.OK || c.Fix != "sudo apt-get install -y qemu-system-x86" {
		t.Errorf("qemu check = %+v", c)
	}
	if c := find(cs, "/dev/kvm"); c.OK || !strings.Contains(c.Detail, "not usable") {
		t.Errorf("kvm check = %+v", c)
	}
	if c := find(cs, "free space"); c.OK {
		t.Errorf("1 GiB free passed: %+v", c)
	}
	cs = Run(fakeHost(map[string]bool{"/": true}, 100<<30, "fedora"), "/x")
	if c := find(cs, "mkfs.ext4"); c.Fix != "sudo dnf install -y e2fsprogs" {
		t.Errorf("fedora fix = %q", c.Fix)
	}
}

func TestAccel(t *testing.T) {
	for _, tt := range []struct {
		acc      api.Accel
		ok, req  bool
		detail   string
		fixStart string
	}{
		{api.Accel{Summary: "kvm", Name: "kvm", CPU: "host", KVM: "works", ProbeTook: "120ms"}, true, false, "kvm, cpu host (daemon's probe took 120ms)", ""},
		{api.Accel{Summary: "tcg (no /dev/kvm)", Name: "tcg", CPU: "max", KVM: "absent"}, false, false, "tcg (no /dev/kvm), cpu max", "enable virtualization"},
		{api.Accel{Summary: "tcg (kvm present but broken: x)", Name: "tcg", CPU: "max", KVM: "broken", ProbeTook: "2.1s"}, false, false, "broken: x), cpu max (daemon's probe took 2.1s)", "KVM does not work"},
		{api.Accel{Summary: "tcg (x)", Name: "tcg", CPU: "max", KVM: "broken", Error: "accel = kvm, but KVM does not work"}, false, true, "no VM can start: accel = kvm", "set accel = \"auto\""},
	} {
		c := Accel(tt.acc, "daemon's probe")
		if c.OK != tt.ok || c.Required != tt.req || !strings.Contains(c.Detail, tt.detail) || !strings.HasPrefix(c.Fix, tt.fixStart) {
			t.Errorf("%+v: got %+v", tt.acc, c)
		}
	}
}

func TestGuard(t *testing.T) {
	for _, tt := range []struct {
		line string
		ok   bool
		fix  bool
	}{
		{"on: guests reach neither this host's addresses", true, false},
		{"off (guard_host = false): user-mode guests can reach this host's addresses and LAN", false, true},
		{"FAILED: nftables: permission denied", false, true},
		{"", true, false},
	} {
		c := Guard(tt.line)
		if c.OK != tt.ok || (c.Fix != "") != tt.fix || c.Required {
			t.Errorf("Guard(%q) = %+v", tt.line, c)
		}
	}
}
