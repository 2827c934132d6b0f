// Package cli is banger's command line: cobra commands that are thin
// clients of the daemon (and the daemon command itself). It holds the root
// command, Main and the host group's commands (daemon, status, version,
// doctor, mcp); each object group's commands are a package of their own
// (vmcmd, imagecmd, kernelcmd), sharing clikit.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/daemon"
	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/front/cli/imagecmd"
	"github.com/banger-dev/banger/internal/front/cli/kernelcmd"
	"github.com/banger-dev/banger/internal/front/cli/vmcmd"
	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// app is the shared App, with the methods the host commands share.
type app struct{ *clikit.App }

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	a := &app{&clikit.App{Stdout: stdout, Stderr: stderr}}
	root := &cobra.Command{
		Use:   "banger",
		Short: "Disposable, fully isolated Linux microVMs in one command",
		Long: `banger runs disposable microVMs: each with its own kernel, booted from a
catalog image, with your SSH key inside.

One binary: 'banger daemon' owns all state and every privileged operation;
every other command is a thin client that talks to it over a unix socket.

Get started:
  sudo banger daemon &                    # the daemon (state in /var/lib/banger)
  banger doctor                           # what this host is missing, and how to get it
  banger vm run -- cat /etc/os-release    # a Debian VM, pulled on first use
  banger vm run --rm                      # a throwaway shell`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defSocket := daemon.DefaultSocket
	if env := os.Getenv("BANGER_SOCKET"); env != "" {
		defSocket = env
	}
	root.PersistentFlags().StringVar(&a.Socket, "socket", defSocket, "daemon socket (env BANGER_SOCKET)")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddGroup(&cobra.Group{ID: "objects", Title: "Objects:"}, &cobra.Group{ID: "host", Title: "Host:"})
	root.AddCommand(
		vmcmd.New(a.App),
		kernelcmd.New(a.App),
		imagecmd.New(a.App),
		vmcmd.NewTemplate(a.App),
		newDaemonCmd(a),
		newStatusCmd(a),
		newDoctorCmd(a),
		newMCPCmd(a),
		newVersionCmd(a),
	)
	root.SetHelpCommandGroupID("host")
	root.SetCompletionCommandGroupID("host")
	markUsageErrors(root)
	return root
}

// markUsageErrors makes cobra's own complaints (a wrong number of
// arguments, an unknown flag or command) usage errors, exit code 2, like
// the checks the commands make themselves.
func markUsageErrors(c *cobra.Command) {
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %w", err, clikit.ErrInvalidUsage) })
	if c.HasSubCommands() && !c.Runnable() {
		// A group prints its help; an argument is a subcommand it does
		// not have. (cobra checks arguments only of runnable commands.)
		c.Args = cobra.NoArgs
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return fmt.Errorf("%w: %w", err, clikit.ErrInvalidUsage)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	root := NewRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ec clikit.ExitCodeError
	if !errors.As(err, &ec) {
		fmt.Fprintf(os.Stderr, "banger: %s\n", errdefs.Message(err))
	}
	return exitCode(err)
}

// exitCode is the process exit code for a command's error.
func exitCode(err error) int {
	var ec clikit.ExitCodeError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.Code
	case errors.Is(err, context.Canceled), errors.Is(err, errdefs.ErrCanceled):
		return 130
	case errors.Is(err, client.ErrDaemonUnreachable):
		return 3
	case errors.Is(err, clikit.ErrInvalidUsage):
		return 2
	}
	return 1
}
