// Package agent is the guest agent: PID 1 in every banger VM. In the
// initramfs it loads the modules the root disk needs, mounts it and
// switches to it; in the root file system it mounts the pseudo file
// systems, sets the hostname, tells the host it is ready and reaps
// zombies until asked to power off. With banger.init=systemd it hands
// PID 1 to the image's systemd instead and runs under it as a service.
package agent

import (
	"strings"

	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// Cmdline is the parsed kernel command line.
type Cmdline struct {
	Params map[string]string
	// ModParams maps a module name to its "key=value ..." parameters
	// (from "module.key=value" words), as modprobe would pass them.
	ModParams map[string]string
}

// ParseCmdline parses /proc/cmdline.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{Params: map[string]string{}, ModParams: map[string]string{}}
	for _, w := range strings.Fields(s) {
		k, v, _ := strings.Cut(w, "=")
		c.Params[k] = v
		if mod, param, ok := strings.Cut(k, "."); ok && !strings.Contains(mod, "/") && v != "" {
			mod = strings.ReplaceAll(mod, "-", "_")
			if c.ModParams[mod] != "" {
				c.ModParams[mod] += " "
			}
			c.ModParams[mod] += param + "=" + v
		}
	}
	return c
}

// ReadyMarker is the line the agent writes on the console once the guest
// is up; the host waits for it.
const ReadyMarker = guestproto.ReadyMarker
