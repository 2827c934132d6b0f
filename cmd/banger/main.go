// Command banger runs disposable microVMs. `banger daemon` is the host
// side; every other command is a client of it.
package main

import (
	"os"

	"github.com/banger-dev/banger/internal/format/guestdisk"
	"github.com/banger-dev/banger/internal/front/cli"
	"github.com/banger-dev/banger/internal/kit/sandbox"
)

func main() {
	// The daemon's sandboxed helpers are this binary too (one file to
	// install); they never reach the CLI's code.
	if len(os.Args) > 2 && os.Args[1] == sandbox.Arg {
		switch os.Args[2] {
		case guestdisk.Entry:
			os.Exit(guestdisk.Main(os.Args[3:]))
		}
		os.Exit(2)
	}
	os.Exit(cli.Main(os.Args[1:]))
}
