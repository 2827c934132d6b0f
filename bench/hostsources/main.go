// Command hostsources prints this host's apt source lines for a suite,
// exactly as banger's debootstrap source reads them, so the benchmark
// builds its Debian image from the same sources banger would.
package main

import (
	"fmt"
	"os"

	"github.com/banger-dev/banger/internal/service/image"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hostsources SUITE")
		os.Exit(2)
	}
	lines, err := image.HostSources(image.AptDir, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, l := range lines {
		fmt.Println(l)
	}
}
