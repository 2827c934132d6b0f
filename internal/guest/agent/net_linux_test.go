package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNetworkFromCmdline(t *testing.T) {
	for _, tt := range []struct {
		cmdline string
		addr    string
		gw      string
		mtu     int
		err     string
	}{
		{"console=ttyS0", "", "", 0, ""},
		{"banger.ip=10.0.2.15/24 banger.gw=10.0.2.2", "10.0.2.15/24", "10.0.2.2", 0, ""},
		{"banger.ip=10.0.2.15/24 banger.gw=10.0.2.2 banger.mtu=65520", "10.0.2.15/24", "10.0.2.2", 65520, ""},
		{"banger.ip=10.0.2.15/24 banger.mtu=9000", "10.0.2.15/24", "", 9000, ""},
		{"banger.ip=10.0.2.15/24 banger.mtu=67", "", "", 0, "banger.mtu=67"},
		{"banger.ip=10.0.2.15/24 banger.mtu=65536", "", "", 0, "banger.mtu=65536"},
		{"banger.ip=10.0.2.15/24 banger.mtu=big", "", "", 0, "banger.mtu=big"},
		{"banger.ip=nope", "", "", 0, "banger.ip=nope"},
		{"banger.ip=10.0.2.15/24 banger.gw=x", "", "", 0, "banger.gw=x"},
	} {
		n, err := NetworkFromCmdline(ParseCmdline(tt.cmdline))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want one naming %s", tt.cmdline, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.cmdline, err)
			continue
		}
		if tt.addr == "" {
			if n != nil {
				t.Errorf("%q: a network without banger.ip: %+v", tt.cmdline, n)
			}
			continue
		}
		gw := ""
		if n.Gateway != nil {
			gw = n.Gateway.String()
		}
		if n.Addr.IPNet.String() != tt.addr || gw != tt.gw || n.MTU != tt.mtu {
			t.Errorf("%q = %s gw %q mtu %d; want %s gw %q mtu %d", tt.cmdline, n.Addr.IPNet, gw, n.MTU, tt.addr, tt.gw, tt.mtu)
		}
	}
}

func TestWriteResolver(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "stub-resolv.conf")
	os.WriteFile(target, []byte("nameserver 127.0.0.53\n"), 0o644)
	path := filepath.Join(dir, "resolv.conf")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	n, err := NetworkFromCmdline(ParseCmdline("banger.ip=10.213.0.2/24 banger.gw=10.213.0.1 banger.dns=10.213.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WriteResolver(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "nameserver 10.213.0.1\n" {
		t.Errorf("resolv.conf: %q", b)
	}
	// Replaced, not written through: the symlink's target is untouched.
	if b, _ := os.ReadFile(target); string(b) != "nameserver 127.0.0.53\n" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	// Without banger.dns the image's file stays.
	n, _ = NetworkFromCmdline(ParseCmdline("banger.ip=10.0.2.15/24"))
	os.WriteFile(path, []byte("mine\n"), 0o644)
	if err := n.WriteResolver(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine\n" {
		t.Errorf("resolv.conf without banger.dns: %q", b)
	}
	if _, err := NetworkFromCmdline(ParseCmdline("banger.ip=10.0.2.15/24 banger.dns=x")); err == nil || !strings.Contains(err.Error(), "banger.dns=x") {
		t.Errorf("a bad banger.dns: %v", err)
	}
}
