package daemon

import (
	"context"
	"fmt"

	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/service/hostnet"
	"github.com/banger-dev/banger/internal/vmm/qemu"
	"github.com/banger-dev/banger/internal/vmm/qemu/accel"
	"github.com/banger-dev/banger/internal/wire/api"
)

// The checks below answer `banger doctor` when no daemon does: what a
// daemon with the default configuration would find on this host, run by
// the caller. They live here, with the wiring, so that the CLI names no
// service or VMM driver itself.

// ProbeAccelHere runs the accelerator probe once, here.
func ProbeAccelHere(ctx context.Context) api.Accel {
	d := qemu.New("", qemu.UIDRange{}, accel.Auto, "")
	ch, _ := d.Accelerator.Reprobe(ctx)
	return ch.API(nil)
}

// DefaultNetwork says what guests of the default configuration reach.
func DefaultNetwork() string {
	return qemu.New("", qemu.UIDRange{}, accel.Auto, "").Network()
}

// CheckBridgeHere says whether bridge mode of the default configuration
// works on this host: its bridge and subnet, or why not.
func CheckBridgeHere() string {
	d := config.Defaults()
	line := fmt.Sprintf("%s, %s", d.BridgeName, d.Subnet())
	if err := hostnet.Check(hostnet.Config{Bridge: d.BridgeName, Subnet: d.Subnet()}); err != nil {
		line = "unavailable: " + err.Error()
	}
	return line
}
