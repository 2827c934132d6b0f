// Command banger-agent is the guest agent, PID 1 in every banger VM: as
// /init in banger's initramfs it mounts the root disk and switches to it,
// then as /.banger/init it brings the guest up. It is built static
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
	if os.Args[0] == "/init" {
		err = agent.InitStage()
	} else {
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
