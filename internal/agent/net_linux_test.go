package agent

import (
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
