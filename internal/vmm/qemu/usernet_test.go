package qemu

import (
	"net"
	"testing"

	"github.com/banger-dev/banger/internal/vmm"
)

func TestListening(t *testing.T) {
	lo, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	wide, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	loPort, anyPort := lo.Addr().(*net.TCPAddr).Port, wide.Addr().(*net.TCPAddr).Port
	for _, tt := range []struct {
		name string
		fws  []vmm.Forward
		want bool
	}{
		{"none", nil, true},
		{"127.0.0.1", []vmm.Forward{{HostPort: loPort}}, true},
		{"0.0.0.0", []vmm.Forward{{HostIP: "0.0.0.0", HostPort: anyPort}}, true},
		{"both", []vmm.Forward{{HostPort: loPort}, {HostIP: "0.0.0.0", HostPort: anyPort}}, true},
		// A port listened on another address is not the forward's.
		{"127.0.0.1 port on 0.0.0.0", []vmm.Forward{{HostPort: anyPort}}, false},
		{"one missing", []vmm.Forward{{HostPort: loPort}, {HostPort: 1}}, false},
	} {
		if got := listening(tt.fws); got != tt.want {
			t.Errorf("%s: listening = %v, want %v", tt.name, got, tt.want)
		}
	}
}
