// Package workspace is the client side of a VM's /work, and of the
// credentials lent to it: seeding a checkout into a new VM, lending the
// files and variables the user's config allows, and showing (diff) or
// bringing back (pull) the work done in /work. The CLI's verbs and
// `banger mcp` both call it.
//
// It is client-side because it reads and writes the user's own files
// with the user's own rights: the checkout to seed, the credentials in
// their home, the repository a pull writes a branch to. The root daemon
// never opens a path a caller names; it takes the seed as a stream and
// hands /work back as one.
package workspace

import (
	"io"

	"github.com/banger-dev/banger/internal/front/client"
)

// Client does the workspace's verbs for one user, over one daemon.
type Client struct {
	daemon *client.Client
	// out takes a verb's result (diff's log and patch, pull's summary);
	// log its notes and warnings.
	out, log io.Writer
}

// New returns a Client that talks to daemon, prints what a verb reports
// to out (the CLI's standard output), and its notes and warnings to log
// (standard error).
func New(daemon *client.Client, out, log io.Writer) *Client {
	return &Client{daemon: daemon, out: out, log: log}
}
