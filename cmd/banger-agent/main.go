// Command banger-agent is the guest agent, PID 1 in every banger VM: as
// /init in banger's initramfs it mounts the root disk and switches to it,
// then as /.banger/init it brings the guest up, or hands PID 1 to the
// image's systemd and comes back as its banger-agent.service. It is built static
// (CGO_ENABLED=0) and injected into every image.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/banger-dev/banger/internal/guest/agent"
)

func main() {
	// Run as the kernel's or a user's modprobe, or as lsmod, through the
	// links the agent makes to itself.
	switch filepath.Base(os.Args[0]) {
	case "modprobe":
		os.Exit(agent.Modprobe(os.Args[1:]))
	case "lsmod":
		os.Exit(agent.Lsmod())
	}
	var err error
	switch {
	case os.Args[0] == "/init":
		err = agent.InitStage()
	case agent.IsService(os.Args):
		// Under systemd, a failure is systemd's to restart.
		if err = agent.ServiceStage(); err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		err = agent.RootStage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: %v\n", err)
		// PID 1 must not exit: the kernel would panic with no message
		// left on the console to read.
		time.Sleep(time.Hour)
	}
	os.Exit(1)
}
