package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/daemon"
	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/front/doctor"
	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/kit/version"
	"github.com/banger-dev/banger/internal/wire/api"
)

func newDaemonCmd(a *app) *cobra.Command {
	var o daemon.Options
	var verbose bool
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the banger daemon (as root)",
		Long: `Run the daemon: it owns every privileged operation and all state (the
SQLite database, kernels, images, VMs) and serves the API on a unix socket
(mode 0660, group banger when that group exists).

It stops cleanly on SIGTERM or SIGINT: running operations are canceled and
undone. Only one daemon may use a state directory at a time.

At start it chooses the accelerator VMs run with (--accel, or accel in the
config; default auto). A /dev/kvm that opens proves nothing under nested
virtualization, so auto boots a tiny probe guest under KVM first and uses
KVM only if it finishes within 2 s; otherwise VMs run under TCG, and
'banger status' says why. The verdict is cached until the host reboots or
qemu changes; 'banger doctor' probes again.`,
		Example: `  sudo banger daemon
  banger daemon --state-dir ~/.local/share/banger --socket $XDG_RUNTIME_DIR/banger.sock   # rootless`,
		GroupID: "host",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			o.Log = slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: level}))
			o.Socket = a.Socket
			return daemon.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.StateDir, "state-dir", daemon.DefaultStateDir, "where state lives: database, kernels, images, VM disks")
	f.StringVar(&o.ConfigPath, "config", config.DefaultPath, "config file (a missing file means defaults)")
	f.StringVar(&o.Accel, "accel", "", "accelerator: auto (prove KVM with a probe guest, else TCG), kvm (KVM or no VM starts), tcg (never touch KVM); overrides the config's accel")
	f.BoolVarP(&verbose, "verbose", "v", false, "log every request")
	return cmd
}

func newStatusCmd(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show whether the daemon is up, its version and what it holds",
		GroupID: "host",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			st, err := a.Client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, st)
			}
			w := a.Stdout
			fmt.Fprintf(w, "Daemon:     running (pid %d, up since %s)\n", st.PID, st.StartedAt.Local().Format("2006-01-02 15:04:05"))
			fmt.Fprintf(w, "Version:    daemon %s %s, client %s %s, API %s\n", st.Daemon.Version, st.Daemon.Commit, version.Info().Version, version.Info().Commit, st.APIVersion)
			fmt.Fprintf(w, "Socket:     %s\n", a.Socket)
			fmt.Fprintf(w, "State dir:  %s\n", st.StateDir)
			fmt.Fprintf(w, "Accel:      %s\n", accelLine(st.Accel))
			fmt.Fprintf(w, "Network:    %s\n", st.Network)
			if st.Guard != "" {
				fmt.Fprintf(w, "Guard:      %s\n", st.Guard)
			}
			if st.Bridge != "" {
				fmt.Fprintf(w, "Bridge:     %s (--net bridge; VMs without --net get %s)\n", st.Bridge, st.DefaultNetwork)
			}
			fmt.Fprintf(w, "Kernels:    %d\n", st.Kernels)
			fmt.Fprintf(w, "Images:     %d\n", st.Images)
			fmt.Fprintf(w, "VMs:        %d\n", st.VMs)
			fmt.Fprintf(w, "Operations: %d running\n", st.Operations)
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

// accelLine is the accelerator as status prints it.
func accelLine(a api.Accel) string {
	if a.Error != "" {
		return "none, no VM can start: " + a.Error
	}
	s := a.Summary
	if a.Name == "" {
		return s
	}
	s += ", cpu " + a.CPU
	switch {
	case a.Cached:
		s += fmt.Sprintf(" (probed %s, cached)", a.ProbedAt.Local().Format("2006-01-02 15:04:05"))
	case a.ProbeTook != "":
		s += " (probe took " + a.ProbeTook + ")"
	}
	return s
}

func newVersionCmd(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the client's version, and the daemon's when it is reachable",
		GroupID: "host",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			cv := version.Info()
			dv, derr := a.Client().Version(cmd.Context())
			if output == "json" {
				out := map[string]any{"client": cv}
				if derr == nil {
					out["daemon"] = dv
				}
				return clikit.PrintJSON(a.Stdout, out)
			}
			fmt.Fprintf(a.Stdout, "client: banger %s %s (%s)\n", cv.Version, cv.Commit, cv.GoVersion)
			if derr != nil {
				fmt.Fprintf(a.Stdout, "daemon: not reachable at %s\n", a.Socket)
				return nil
			}
			fmt.Fprintf(a.Stdout, "daemon: banger %s %s (%s)\n", dv.Version, dv.Commit, dv.GoVersion)
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newDoctorCmd(a *app) *cobra.Command {
	var output, stateDir string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host for what banger needs, and say how to install what is missing",
		Long: `Check this host: hardware virtualization (/dev/kvm), the VMMs (qemu,
firecracker), e2fsprogs, bridge-networking tools, free space in the state
directory, and whether the daemon answers. Each missing piece comes with the
command that installs it. Exits non-zero when something required is missing.

The accelerator check proves KVM afresh with a probe guest: through the
daemon when it answers (which then uses the new verdict for VMs it starts),
else right here with this user's rights.`,
		GroupID: "host",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			checks := doctor.Run(doctor.Real(), stateDir)
			checks = append(checks, a.accelCheck(cmd.Context()), a.networkCheck(cmd.Context()), a.guardCheck(cmd.Context()), a.bridgeCheck(cmd.Context()), a.daemonCheck(cmd.Context()))
			if output == "json" {
				if err := clikit.PrintJSON(a.Stdout, checks); err != nil {
					return err
				}
			} else {
				t := clikit.NewTable(a.Stdout, "CHECK", "STATUS", "DETAIL")
				for _, c := range checks {
					status := "ok"
					if !c.OK {
						status = "missing"
						if !c.Required {
							status = "optional"
						}
					}
					t.Row(c.Name, status, c.Detail)
				}
				t.Flush()
				var fixes []string
				for _, c := range checks {
					if !c.OK && c.Fix != "" {
						fixes = append(fixes, fmt.Sprintf("  %-20s %s", c.Name+":", c.Fix))
					}
				}
				if len(fixes) > 0 {
					fmt.Fprintln(a.Stdout, "\nTo fix:")
					for _, f := range fixes {
						fmt.Fprintln(a.Stdout, f)
					}
				}
			}
			if doctor.Failed(checks) {
				return errors.New("required pieces are missing (see above)")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", daemon.DefaultStateDir, "the daemon's state directory, for the free-space check")
	clikit.OutputFlag(cmd, &output)
	return cmd
}

// accelCheck proves the accelerator afresh: the daemon's own probe when it
// answers, else one run here.
func (a *app) accelCheck(ctx context.Context) doctor.Check {
	acc, err := a.Client().ProbeAccel(ctx)
	where := "daemon's probe"
	if err != nil {
		where = "probe run here"
		acc = daemon.ProbeAccelHere(ctx)
	}
	return doctor.Accel(acc, where)
}

// networkCheck says what guests reach: as the daemon has it, else as the
// default configuration would have it on this host.
func (a *app) networkCheck(ctx context.Context) doctor.Check {
	if st, err := a.Client().Status(ctx); err == nil && st.Network != "" {
		return doctor.Network(st.Network, "daemon")
	}
	return doctor.Network(daemon.DefaultNetwork(), "default configuration")
}

// guardCheck says whether guests are kept off this host, as the daemon
// says.
func (a *app) guardCheck(ctx context.Context) doctor.Check {
	st, err := a.Client().Status(ctx)
	if err != nil {
		return doctor.Guard("")
	}
	return doctor.Guard(st.Guard)
}

// bridgeCheck says whether bridge mode works: as the daemon has it, else
// as a daemon with the default configuration would find it, run by this
// user.
func (a *app) bridgeCheck(ctx context.Context) doctor.Check {
	if st, err := a.Client().Status(ctx); err == nil && st.Bridge != "" {
		return doctor.Bridge(st.Bridge, "daemon")
	}
	return doctor.Bridge(daemon.CheckBridgeHere(), "checked here, default configuration")
}

func (a *app) daemonCheck(ctx context.Context) doctor.Check {
	c := doctor.Check{Name: "daemon", Required: false}
	st, err := a.Client().Status(ctx)
	switch {
	case err == nil:
		c.OK = true
		c.Detail = fmt.Sprintf("running, pid %d, version %s, state %s", st.PID, st.Daemon.Version, st.StateDir)
	case errors.Is(err, client.ErrDaemonUnreachable):
		c.Detail = "not reachable at " + a.Socket
		c.Fix = "sudo banger daemon"
		if _, serr := os.Stat(a.Socket); serr == nil {
			c.Detail += " (the socket exists: check its permissions)"
		}
	default:
		c.Detail = err.Error()
	}
	return c
}
