// Package clikit holds what every group of banger's commands shares: the
// App (daemon client, standard output and error), the output helpers
// (tables, -o json, progress), common flags, and the upload of local
// files to the daemon.
package clikit

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/wire/api"
)

// App holds what every command shares.
type App struct {
	// Socket is the daemon's socket; the root command's --socket sets
	// it, so read it only when a command runs.
	Socket string
	Stdout io.Writer
	Stderr io.Writer
}

// Client talks to the daemon; it is made when a command runs, after
// --socket is parsed.
func (a *App) Client() *client.Client { return client.New(a.Socket) }

// ErrInvalidUsage marks a bad command line (exit code 2); its words end
// the message.
var ErrInvalidUsage = errors.New("see --help")

// ExitCodeError carries a guest command's exit code out of RunE.
type ExitCodeError struct{ Code int }

func (e ExitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// UserKey is the user's banger SSH key (made on first use) and its
// authorized_keys line.
func UserKey() (ssh.Signer, string, error) {
	path, err := guestssh.KeyPath()
	if err != nil {
		return nil, "", err
	}
	return guestssh.LoadOrCreateKey(path)
}

// CompleteVMs offers VM names; commands of other groups that name a VM
// (image promote) offer them too.
func (a *App) CompleteVMs(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return Complete(cmd, args, true, a.Client().VMs, func(v api.VM) string { return v.Name + "\t" + v.State + ", " + v.Image })
}

// RemoveEach removes each named object, going on past failures, and fails
// if any failed.
func (a *App) RemoveEach(names []string, kind string, rm func(string) error) error {
	if len(names) == 1 {
		if err := rm(names[0]); err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "removed %s %s\n", kind, names[0])
		return nil
	}
	failed := 0
	for _, name := range names {
		if err := rm(name); err != nil {
			fmt.Fprintf(a.Stderr, "banger: %v\n", err)
			failed++
			continue
		}
		fmt.Fprintf(a.Stdout, "removed %s %s\n", kind, name)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d %ss not removed", failed, len(names), kind)
	}
	return nil
}
