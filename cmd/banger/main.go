// Command banger runs disposable microVMs. `banger daemon` is the host
// side; every other command is a client of it.
package main

import (
	"os"

	"github.com/banger-dev/banger/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
