// Package probeguest holds the accelerator probe's guest: a tiny x86
// program (probe.S) booted through the PVH entry like banger's kernels,
// which switches to long mode, touches fresh memory, runs a locked 16-byte
// compare-exchange and reports each step on the serial console. A VMM that
// runs it to the end can run a kernel; one that crashes, stalls or dies on
// an emulation failure cannot.
package probeguest

import (
	_ "embed"
	"strings"
)

//go:generate ./generate.sh

// ELF is the probe guest, built from probe.S by generate.sh.
//
//go:embed probe.elf
var ELF []byte

// Prefix starts every line the guest prints.
const Prefix = "banger-probe: "

// The stages the guest reports, in order.
const (
	StageStart    = "start"     // it runs at all
	StageLongMode = "long mode" // MSR writes and paging worked
	StageMemory   = "memory"    // 48 MiB of fresh pages were touched
	StageOK       = "ok"        // the locked cmpxchg16b worked: done
)

// Stage returns the last stage reported in console output, or "" when the
// guest printed nothing.
func Stage(console string) string {
	last := ""
	for _, line := range strings.Split(console, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), Prefix); ok {
			last = s
		}
	}
	return last
}

// Next says what the guest was doing after reporting stage: what did not
// finish, for an error message.
func Next(stage string) string {
	switch stage {
	case "":
		return "starting the guest (nothing on its console)"
	case StageStart:
		return "switching to long mode (page tables, the EFER MSR)"
	case StageLongMode:
		return "touching 48 MiB of fresh guest memory"
	case StageMemory:
		return "a locked 16-byte compare-exchange (cmpxchg16b)"
	}
	return "finishing"
}
