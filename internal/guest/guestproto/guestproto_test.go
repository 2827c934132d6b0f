package guestproto

import (
	"strings"
	"testing"
)

func TestKeysRoundTrip(t *testing.T) {
	keys := []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0 user@host", "ssh-rsa AAAAB3 other"}
	enc := EncodeKeys(keys)
	if strings.ContainsAny(enc, " \n\t\"") {
		t.Fatalf("encoded keys %q cannot sit on a kernel command line", enc)
	}
	dec, err := DecodeKeys(enc)
	if err != nil || string(dec) != strings.Join(keys, "\n") {
		t.Fatalf("DecodeKeys = %q, %v", dec, err)
	}
	if _, err := DecodeKeys("not base64!"); err == nil {
		t.Fatal("DecodeKeys accepted garbage")
	}
}

func TestHostKeyFromConsole(t *testing.T) {
	tests := []struct{ console, want string }{
		{"", ""},
		{"boot\n" + HostKeyPrefix + "SHA256:abc\n" + ReadyMarker + "\n", "SHA256:abc"},
		{HostKeyPrefix + "SHA256:old\nreboot\n" + HostKeyPrefix + "SHA256:new\n", "SHA256:new"},
		{HostKeyPrefix, ""},
	}
	for _, tt := range tests {
		if got := HostKeyFromConsole(tt.console); got != tt.want {
			t.Errorf("HostKeyFromConsole(%q) = %q, want %q", tt.console, got, tt.want)
		}
	}
}

func TestHomePath(t *testing.T) {
	for in, want := range map[string]string{
		".gitconfig": ".gitconfig", ".config/gh/hosts.yml": ".config/gh/hosts.yml", "a/./b": "a/b",
		"": "", "/etc/shadow": "", "..": "", "../x": "", "a/../../x": "", ".": "",
	} {
		got, err := HomePath(in)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("HomePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseService(t *testing.T) {
	for _, tc := range []struct {
		in, name, socket string
		ok               bool
	}{
		{"dockerd", "dockerd", "", true},
		{"dockerd:/run/docker.sock", "dockerd", "/run/docker.sock", true},
		{"containerd-1.7", "containerd-1.7", "", true},
		{"/usr/bin/dockerd", "", "", false},
		{"../x", "", "", false},
		{"a b", "", "", false},
		{"dockerd:run/docker.sock", "", "", false},
		{"dockerd:/run/../etc/x", "", "", false},
		{"", "", "", false},
	} {
		n, s, err := ParseService(tc.in)
		if (err == nil) != tc.ok || n != tc.name || s != tc.socket {
			t.Errorf("%q: %q %q %v", tc.in, n, s, err)
		}
	}
}

func TestInitFromReady(t *testing.T) {
	for _, c := range []struct{ console, want string }{
		{"boot\n" + ReadyMarker + ": kernel 6.1.0-57-amd64, root rw\n", InitBanger},
		{ReadyMarker + ": kernel 6.1, root rw, init systemd (running)\n", InitSystemd},
		{ReadyMarker + ": kernel 6.1, root rw, init systemd (degraded: failed x.service)\nmore\n", InitSystemd},
		// The last ready line counts: an earlier boot's does not.
		{ReadyMarker + ": kernel 6.1, root rw, init systemd (running)\n" + ReadyMarker + ": kernel 6.1, root rw\n", InitBanger},
		{"no ready line\n", ""},
	} {
		if got := InitFromReady(c.console); got != c.want {
			t.Errorf("InitFromReady(%q) = %q, want %q", c.console, got, c.want)
		}
	}
}

func TestCheckInit(t *testing.T) {
	for _, ok := range []string{"", InitBanger, InitSystemd} {
		if err := CheckInit(ok); err != nil {
			t.Errorf("CheckInit(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"upstart", "Systemd", "systemd ", "/sbin/init"} {
		if err := CheckInit(bad); err == nil {
			t.Errorf("CheckInit(%q) accepted", bad)
		}
	}
}
