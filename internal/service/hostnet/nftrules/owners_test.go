package nftrules

import (
	"net"
	"net/netip"
	"testing"
)

func TestOwners(t *testing.T) {
	got := owners([]Guest{a1, b1, a2})
	if len(got) != 2 || got[0].uid != 1000 || len(got[0].taps) != 2 || string(got[0].taps[1][:9]) != "bg-id-a2\x00" ||
		got[1].uid != 2000 || len(got[1].ips) != 1 || netip.AddrFrom4([4]byte(got[1].ips[0])) != b1.IP ||
		net.HardwareAddr(got[1].macs[0]).String() != "02:b4:0a:d5:00:04" {
		t.Errorf("owners = %+v", got)
	}
	if got := owners([]Guest{a1}); len(got) != 1 {
		t.Errorf("one guest: owners = %+v", got)
	}
}
