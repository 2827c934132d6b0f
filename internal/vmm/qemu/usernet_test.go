package qemu

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
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

// The guest's address travels on its command line, whichever backend; the
// MTU only under passt.
func TestDriverGuestParams(t *testing.T) {
	tcg := vmm.Accel{Name: "tcg", CPU: "max"}
	// Under TCG the guest's TSC is this host's: its rate, to the MHz.
	tsc := fmt.Sprintf("tsc_early_khz=%d", HostTSCKHz())
	if khz := HostTSCKHz(); khz < 100000 || khz%1000 != 0 {
		t.Errorf("host TSC %d kHz", khz)
	}
	for _, tt := range []struct {
		mode string
		want string
	}{
		{NetSlirp, "pci=off " + tsc + " banger.ip=10.0.2.15/24 banger.gw=10.0.2.2"},
		{NetIsolated, "pci=off " + tsc + " banger.ip=10.0.2.15/24 banger.gw=10.0.2.2"},
	} {
		d := &Driver{Options: Options{UserNet: tt.mode}}
		if got := strings.Join(d.GuestParams(tcg), " "); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.mode, got, tt.want)
		}
	}
	if _, err := exec.LookPath(PasstBinary); err == nil && hasDefaultRoute() {
		d := &Driver{Options: Options{UserNet: NetPasst}}
		if got := strings.Join(d.GuestParams(tcg), " "); !strings.HasSuffix(got, " banger.mtu=65520") {
			t.Errorf("passt: %q lacks banger.mtu=65520", got)
		}
	}
}
