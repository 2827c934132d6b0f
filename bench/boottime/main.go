// Command boottime starts a VMM command in its own session, waits until
// its console file holds a marker line, and prints the seconds that took
// and the VMM's PID; the VMM keeps running. Polling happens in this one
// process, so that measuring does not steal the CPU from the guest the
// way a shell loop of greps would on a 2-core machine.
//
//	boottime -console FILE [-marker TEXT] [-timeout 3m] -- qemu-system-x86_64 ARGS...
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	console := flag.String("console", "", "console file the VMM writes")
	marker := flag.String("marker", "banger-agent: ready", "line that means ready")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after")
	flag.Parse()
	if *console == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: boottime -console FILE [-marker TEXT] -- COMMAND...")
		os.Exit(2)
	}
	os.Remove(*console)
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	for {
		if b, err := os.ReadFile(*console); err == nil && bytes.Contains(b, []byte(*marker)) {
			fmt.Printf("%.3f %d\n", time.Since(start).Seconds(), cmd.Process.Pid)
			return
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(*console)
			fmt.Fprintf(os.Stderr, "the VMM exited before %q; console:\n%s\n", *marker, b)
			os.Exit(1)
		case <-time.After(*timeout - time.Since(start)):
			cmd.Process.Kill()
			fmt.Fprintf(os.Stderr, "no %q after %s\n", *marker, *timeout)
			os.Exit(1)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
