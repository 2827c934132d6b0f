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
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	loPort, anyPort, udpPort := lo.Addr().(*net.TCPAddr).Port, wide.Addr().(*net.TCPAddr).Port, udp.LocalAddr().(*net.UDPAddr).Port
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
		{"a UDP port is not a TCP one", []vmm.Forward{{HostPort: loPort, UDP: true}}, false},
		{"UDP", []vmm.Forward{{HostPort: udpPort, UDP: true}}, true},
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
	if got := strings.Join((&Driver{}).GuestParams(tcg), " "); got != "pci=off "+tsc {
		t.Errorf("guest params %q, want the accelerator's only", got)
	}
	user := "banger.ip=10.0.2.15/24 banger.gw=10.0.2.2"
	for _, tt := range []struct {
		mode string
		n    vmm.Network
		want string
	}{
		{NetSlirp, vmm.Network{}, user},
		{NetIsolated, vmm.Network{}, user},
		{NetPasst, vmm.Network{Isolated: true}, user},
		// A tap's addresses are the host network's lease, not the driver's.
		{NetPasst, vmm.Network{Tap: "bg-x"}, ""},
		{NetPasst, vmm.Network{None: true}, ""},
	} {
		d := &Driver{Options: Options{UserNet: tt.mode}}
		if got := strings.Join(d.NetParams(tt.n), " "); got != tt.want {
			t.Errorf("%s %+v: %q, want %q", tt.mode, tt.n, got, tt.want)
		}
	}
	if _, err := exec.LookPath(PasstBinary); err == nil && hasDefaultRoute() {
		d := &Driver{Options: Options{UserNet: NetPasst}}
		if got := strings.Join(d.NetParams(vmm.Network{}), " "); got != user+" banger.mtu=65520" {
			t.Errorf("passt: %q lacks banger.mtu=65520", got)
		}
	}
}
