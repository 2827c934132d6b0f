// Package vmcmd holds banger's VM commands: 'banger vm' (create, run,
// reach, snapshot and fork VMs, and the glue that seeds, diffs and pulls
// their /work) and 'banger template', the saved guests VMs resume from.
package vmcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/front/userconfig"
	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/kit/units"
	"github.com/banger-dev/banger/internal/wire/api"
)

// app is the shared App, with the methods this group's commands share.
type app struct{ *clikit.App }

// New builds 'banger vm'.
func New(ca *clikit.App) *cobra.Command {
	a := &app{ca}
	cmd := &cobra.Command{
		Use:     "vm",
		Aliases: []string{"vms"},
		Short:   "Create, run and reach microVMs",
		Long: `VMs are microVMs with their own kernel, booted from an image. Each gets its
own copy-on-write root disk (changes survive stop and start), a guest agent
as PID 1 that serves SSH, and a 127.0.0.1 port forwarded to it.

The quickest way in is 'banger vm run': create, boot, wait, then a shell or
one command, its exit code passed through.`,
		Example: `  banger vm run -- cat /etc/os-release       # default image, one command
  banger vm run --rm                          # a throwaway shell
  banger vm create --name web -p 8080:80 --memory 2G --disk 8G
  banger vm start web && banger vm exec web -- uname -a
  banger vm cp ./app.tar web:/root/ && banger vm ssh web`,
		GroupID: "objects",
	}
	cmd.AddCommand(newVMRun(a), newVMCreate(a), newVMStart(a), newVMStop(a), newVMRestart(a), newVMRm(a),
		newVMLs(a), newVMShow(a), newVMLogs(a), newVMSSH(a), newVMExec(a), newVMCp(a),
		newVMDiff(a), newVMPull(a), newVMAuthSync(a), newVMSnapshot(a), newVMFork(a), newVMEgress(a), newVMReport(a))
	return cmd
}

// createFlags are the flags vm create and vm run share.
type createFlags struct {
	req     api.VMCreateRequest
	memory  string
	timeout time.Duration
	seed    seedFlags
}

func (f *createFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.req.Name, "name", "", "VM name (default: generated, like swift-otter)")
	fl.StringVar(&f.req.Image, "image", "", "image to boot, pulled when not local (default: default_image_name, debian-bookworm)")
	fl.StringVar(&f.req.Kernel, "kernel", "", "kernel to boot (default: the image's)")
	fl.IntVar(&f.req.CPUs, "cpus", 0, "virtual CPUs (default: default_cpus, 2)")
	fl.StringVar(&f.memory, "memory", "", "memory, in MiB or with a unit: 512, 2G (default: default_memory_mib, 1024)")
	fl.StringVar(&f.req.Disk, "disk", "", "root disk size, such as 20G (default: default_disk in the daemon's config, 10G); room beyond the image's files costs nothing until written")
	fl.StringArrayVarP(&f.req.Ports, "publish", "p", nil, "publish a guest port: [HOSTIP:]HOST:GUEST[/udp], TCP unless /udp, on 127.0.0.1 unless HOSTIP says otherwise (0.0.0.0: every address); host ports below 1024 need root (repeatable)")
	fl.StringVar(&f.req.Network, "net", "", "network: user (the VMM's own, no root needed; SSH and -p through forwards), bridge (a tap on banger's bridge: an address of its own, VMs reach each other, egress policies) or none (reaches nothing) (default: default_network, user)")
	fl.StringVar(&f.req.Egress, "egress", "", "where the guest may connect, enforced on the host (user and bridge modes): open, deny, allow=HOST[,HOST...] (only those names, and only the addresses they resolve to; *.example.com for subdomains), learn (anything, recording every name it looks up; see 'banger vm egress'), or from=VM (allow what VM learned) (default: open)")
	fl.DurationVar(&f.timeout, "timeout", 0, "how long to wait for the guest to be ready (default: ready_timeout, 2m)")
	fl.StringVar(&f.req.Init, "init", "", "the guest's init system: banger (the agent is PID 1: fastest, the image needs no init of its own) or systemd (the image's systemd is PID 1, units and systemctl work, the agent is banger-agent.service; the image must have systemd) (default: banger)")
	fl.StringVar(&f.req.Snapshot, "from-snapshot", "", "fork a snapshot (banger vm snapshot): its image, size, disks and running processes, with an identity of its own")
	f.seed.register(cmd)
}

// request completes the request with the user's key and parsed sizes.
func (f *createFlags) request(cmd *cobra.Command, key string) (api.VMCreateRequest, error) {
	req := f.req
	if cmd.Flags().Changed("cpus") && req.CPUs < 1 {
		return req, fmt.Errorf("--cpus %d: a VM needs at least 1 CPU: %w", req.CPUs, clikit.ErrInvalidUsage)
	}
	if f.memory != "" {
		n, err := units.ParseSize(f.memory, units.MiB)
		if err != nil {
			return req, fmt.Errorf("--memory: %w: %w", err, clikit.ErrInvalidUsage)
		}
		req.MemoryMB = int(n / units.MiB)
		if req.MemoryMB == 0 {
			req.MemoryMB = -1 // below a MiB: let the daemon say it is too little
		}
	}
	if f.timeout > 0 {
		req.ReadyTimeout = f.timeout.String()
	}
	req.AuthorizedKeys = []string{key}
	return req, nil
}

func newVMCreate(a *app) *cobra.Command {
	var f createFlags
	var output string
	cmd := &cobra.Command{
		Use:   "create [flags]",
		Short: "Create a VM (pulling its image and kernel when needed) without starting it",
		Long: `Create a VM: its image and kernel are pulled on first use, and it gets its
own copy-on-write root disk. Your banger SSH key (made on first use, see
'banger vm ssh --help') is authorized for root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			_, key, err := clikit.UserKey()
			if err != nil {
				return err
			}
			req, err := f.request(cmd, key)
			if err != nil {
				return err
			}
			if req.Seed, err = a.seedUnlessFork(cmd.Context(), req, f.seed); err != nil {
				return err
			}
			p := a.Progress()
			v, err := a.Client().CreateVM(cmd.Context(), req, p.Event)
			p.Done()
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, v)
			}
			fmt.Fprintf(a.Stdout, "created vm %s (image %s, kernel %s): start it with `banger vm start %s`\n", v.Name, v.Image, v.Kernel, v.Name)
			return nil
		},
	}
	f.register(cmd)
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newVMRun(a *app) *cobra.Command {
	var f createFlags
	var rm, tty bool
	var secrets []string
	cmd := &cobra.Command{
		Use:   "run [flags] [-- COMMAND [ARG...]]",
		Short: "Create and start a VM, then open a shell in it or run a command",
		Long: `Create a VM, boot it, wait for its guest agent, then open an interactive
shell, or run COMMAND and exit with its exit code. On a fresh host this is
the whole set-up: the image (default_image_name, debian-bookworm) and its
kernel are pulled on first use.

If the VM does not become ready (within --timeout), it is removed again and
the last lines of its console are shown. With --rm the VM is removed when
the shell or command ends.

Secrets (--secret NAME) never enter the VM. Declare them in your config
(~/.config/banger/config.toml, or $BANGER_CONFIG): where the value comes
from (read by this command, with your rights), the hosts it may go to, and
where the guest finds its placeholder, a random string:

  [secrets.gh]
  from_command = ["gh", "auth", "token"]   # or from_env = "GH_TOKEN", from_file = "~/.config/gh/token"
  hosts = ["api.github.com", "github.com"] # or "*.example.com"
  env = "GH_TOKEN"                         # and/or file = "~/.config/gh/token"

The guest's HTTP and HTTPS traffic goes through a proxy of the daemon's
(HTTPS_PROXY, on a port of the guest's loopback tunnelled to the host).
For the secret's hosts only, the proxy opens TLS with a CA made for this
VM (in the guest's trust store, SSL_CERT_FILE, GIT_SSL_CAINFO,
NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE), checks the real server against
the host's trust store, and puts the value where the placeholder is in the
request's headers (a Basic credential too, so git over HTTPS works). Other
hosts' TLS passes untouched; a placeholder sent anywhere else goes out as
the meaningless string it is, and 'banger vm show' records the attempt.
The daemon holds values in memory for the VM's current boot only: give
them again with 'vm start --secret' after a stop or a daemon restart.
[auth_sync] stays for what cannot be a header: files, an SSH agent.`,
		Example: `  banger vm run -- cat /etc/os-release
  banger vm run --rm --image alpine-3.20 -- sh -c 'apk --version'
  banger vm run --name dev --cpus 4 --memory 4G --disk 20G -p 8080:80
  banger vm run --egress allow=github.com,*.github.com -- git ls-remote https://github.com/golang/go
  banger vm run --egress learn --name probe -- ./install-deps.sh   # then: banger vm egress probe
  banger vm run --secret gh -- sh -c 'curl -H "Authorization: Bearer $GH_TOKEN" https://api.github.com/user'
  banger vm run --image debian-bookworm-dev -- docker run --rm hello-world
  banger vm run --image debian-bookworm-dev --init systemd -- systemctl status`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !isTerminal(os.Stdin) {
				return fmt.Errorf("without a command, vm run opens a shell, which needs a terminal: pass -- COMMAND: %w", clikit.ErrInvalidUsage)
			}
			signer, key, err := clikit.UserKey()
			if err != nil {
				return err
			}
			req, err := f.request(cmd, key)
			if err != nil {
				return err
			}
			req.Start = true
			// Read first: a secret that cannot be read makes no VM.
			grants, err := a.secretGrants(cmd.Context(), secrets)
			if err != nil {
				return err
			}
			if req.Seed, err = a.seedUnlessFork(cmd.Context(), req, f.seed); err != nil {
				return err
			}
			c := a.Client()
			p := a.Progress()
			v, err := c.CreateVM(cmd.Context(), req, p.Event)
			p.Done()
			if err != nil {
				return err
			}
			if rm {
				defer func() {
					cctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), time.Minute)
					defer cancel()
					if err := c.RemoveVM(cctx, v.Name, true); err != nil {
						fmt.Fprintf(a.Stderr, "banger: remove vm %s: %v\n", v.Name, err)
					}
				}()
			} else if len(args) > 0 {
				if v.Work != nil {
					defer fmt.Fprintf(a.Stderr, "vm %s keeps running: `banger vm ssh %s`; `banger vm diff %s` and `banger vm pull %s` bring back its work\n", v.Name, v.Name, v.Name, v.Name)
				} else {
					defer fmt.Fprintf(a.Stderr, "vm %s keeps running: `banger vm ssh %s`, or `banger vm rm -f %s` when done\n", v.Name, v.Name, v.Name)
				}
			}
			if err := a.lend(cmd.Context(), v.Name); err != nil {
				fmt.Fprintf(a.Stderr, "banger: lend credentials: %v\n", err)
			}
			if err := a.workspace().GiveSecrets(cmd.Context(), v.Name, grants); err != nil {
				return err
			}
			return a.session(cmd.Context(), "run", v, signer, args, len(args) == 0 || tty, len(args) == 0)
		},
	}
	f.register(cmd)
	secretFlag(cmd, &secrets)
	cmd.Flags().BoolVar(&rm, "rm", false, "remove the VM when the shell or command ends")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "run COMMAND on a terminal")
	return cmd
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// session runs argv in the VM (a shell when empty) with this process's
// stdio, and returns its exit code as a clikit.ExitCodeError. The
// command goes on the VM's activity record as action (run, exec, ssh).
func (a *app) session(ctx context.Context, action string, v api.VM, key ssh.Signer, argv []string, tty, stdin bool) error {
	conn, err := guestssh.Dial(ctx, v, key)
	if err != nil {
		return err
	}
	defer conn.Close()
	var out clikit.Counter
	st := guestssh.IO{Stdout: out.Wrap(a.Stdout), Stderr: out.Wrap(a.Stderr), TTY: tty}
	// A terminal's input goes to the guest only when asked for (-i, a
	// shell): a one-shot command must not swallow what is typed next.
	if stdin || !isTerminal(os.Stdin) {
		st.Stdin = os.Stdin
	}
	if cfg, _, err := userconfig.Load(); err != nil {
		return err
	} else if cfg.AuthSync.SSHAgent {
		if st.Agent = os.Getenv("SSH_AUTH_SOCK"); st.Agent == "" {
			fmt.Fprintln(a.Stderr, "banger: auth_sync.ssh_agent is on, but SSH_AUTH_SOCK is not set: no agent to forward")
		}
	}
	began := time.Now()
	code, err := guestssh.Run(ctx, conn, guestssh.Command(argv), st)
	ev := api.ActivityEvent{Time: began, Kind: api.ActCommand, Action: action, Via: api.ViaCLI, Argv: argv, Dir: "~",
		DurationMS: time.Since(began).Milliseconds(), OutputBytes: out.N(), TTY: tty}
	if err == nil {
		ev.Exit = &code
	} else {
		ev.Detail = err.Error()
	}
	a.recordActivity(ctx, v.Name, ev)
	if err != nil {
		return err
	}
	if code != 0 {
		return clikit.ExitCodeError{Code: code}
	}
	return nil
}

func newVMStart(a *app) *cobra.Command {
	return newVMBoot(a, "start", "Boot stopped VMs and wait until they are ready", "started", (*client.Client).StartVM)
}

func newVMRestart(a *app) *cobra.Command {
	return newVMBoot(a, "restart", "Stop VMs cleanly and start them again", "restarted", (*client.Client).RestartVM)
}

// newVMBoot builds the commands that end with VMs booted and ready. call
// is a client method: the client is made when the command runs, after
// --socket is parsed.
func newVMBoot(a *app, verb, short, done string, call func(*client.Client, context.Context, string, api.VMStartRequest, func(api.Event)) (api.VM, error)) *cobra.Command {
	var timeout time.Duration
	var secrets []string
	cmd := &cobra.Command{
		Use:               verb + " NAME...",
		Short:             short,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			grants, err := a.secretGrants(cmd.Context(), secrets)
			if err != nil {
				return err
			}
			req := api.VMStartRequest{}
			if timeout > 0 {
				req.ReadyTimeout = timeout.String()
			}
			return a.eachVM(args, done, func(name string, p *clikit.Progress) error {
				if _, err := call(a.Client(), cmd.Context(), name, req, p.Event); err != nil {
					return err
				}
				if err := a.lend(cmd.Context(), name); err != nil {
					fmt.Fprintf(a.Stderr, "banger: lend credentials to vm %s: %v\n", name, err)
				}
				return a.workspace().GiveSecrets(cmd.Context(), name, grants)
			})
		},
	}
	secretFlag(cmd, &secrets)
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "how long to wait for the guest to be ready (default: ready_timeout, 2m)")
	return cmd
}

func newVMStop(a *app) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME...",
		Short: "Power VMs off cleanly (their disks keep every change)",
		Long: `Stop VMs: the guest agent is asked to power off (file systems are synced
and unmounted by the guest kernel); if a guest has not gone within
--timeout, its VMM is stopped, then killed. --timeout 0 kills at once.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.VMStopRequest{}
			if cmd.Flags().Changed("timeout") {
				req.Timeout = timeout.String()
			}
			return a.eachVM(args, "stopped", func(name string, p *clikit.Progress) error {
				_, err := a.Client().StopVM(cmd.Context(), name, req, p.Event)
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long the guest may take to power off before it is killed")
	return cmd
}

// eachVM runs fn on each named VM with progress, going on past failures.
func (a *app) eachVM(names []string, verb string, fn func(string, *clikit.Progress) error) error {
	failed := 0
	var last error
	for _, name := range names {
		p := a.Progress()
		err := fn(name, p)
		p.Done()
		if err != nil {
			if len(names) == 1 {
				return err
			}
			fmt.Fprintf(a.Stderr, "banger: %v\n", err)
			failed++
			last = err
			continue
		}
		fmt.Fprintf(a.Stdout, "%s vm %s\n", verb, name)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d VMs not %s (last: %w)", failed, len(names), verb, last)
	}
	return nil
}

func newVMRm(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove VMs and their disks",
		Long: `Remove VMs and their disks. A running VM is refused unless --force, which
kills it first; so is a VM whose work in /work was never brought back with
'banger vm pull' (see it with 'banger vm diff').`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.RemoveEach(args, "vm", func(name string) error { return a.Client().RemoveVM(cmd.Context(), name, force) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill and remove running VMs, and drop work never pulled")
	return cmd
}

func newVMLs(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list", "ps"},
		Short:   "List VMs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			vs, err := a.Client().VMs(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, vs)
			}
			owners := clikit.SeesOwners()
			t := clikit.NewTable(a.Stdout, clikit.OwnerCol(owners, "OWNER", "NAME", "STATE", "IMAGE", "KERNEL", "CPUS", "MEMORY", "DISK", "WORK", "BY", "SSH", "PORTS", "CREATED")...)
			for _, v := range vs {
				ssh := "-"
				if v.State == api.VMRunning {
					ssh = v.SSHAddr()
				}
				t.Row(clikit.OwnerCol(owners, clikit.OwnerName(v.Owner), v.Name, v.State, v.Image, v.Kernel, fmt.Sprint(v.CPUs), clikit.HumanSize(int64(v.MemoryMB)<<20), clikit.HumanSize(v.DiskBytes), workState(v.Work), madeBy(v.MadeBy), ssh, clikit.OrDash(ports(v.Ports)), clikit.Ago(v.CreatedAt))...)
			}
			t.Flush()
			if len(vs) == 0 {
				fmt.Fprintln(a.Stderr, "no VMs yet: `banger vm run` makes one")
			}
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

// workState is the WORK column: whether the VM has a work disk, and
// whether its work was pulled.
func workState(w *api.Work) string {
	switch {
	case w == nil:
		return "-"
	case w.PulledAt.IsZero():
		return "seeded"
	default:
		return "pulled"
	}
}

// madeBy is the BY column: the tool that made the VM, "-" for the CLI.
func madeBy(m *api.MadeBy) string {
	if m == nil {
		return "-"
	}
	return m.Tool
}

func ports(ps []api.PortForward) string {
	var out []string
	for _, p := range ps {
		s := fmt.Sprintf("%d->%d", p.HostPort, p.GuestPort)
		if p.HostIP != "" {
			s = p.HostIP + ":" + s
		}
		if p.UDP() {
			s += "/udp"
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// network is a VM's network as vm show says it.
func network(v api.VM) string {
	switch v.Network {
	case api.NetBridge:
		ip := v.IP
		if ip == "" {
			ip = "no address yet"
		}
		return fmt.Sprintf("bridge, %s, egress %s", ip, v.Egress)
	case api.NetNone:
		return "none (reaches nothing)"
	}
	if v.Egress != "" {
		return "user, egress " + v.Egress
	}
	return "user"
}

func newVMShow(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a VM: state, resources, disks, how to reach it",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			v, err := a.Client().VM(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, v)
			}
			w := a.Stdout
			fmt.Fprintf(w, "Name:     %s\n", v.Name)
			fmt.Fprintf(w, "State:    %s\n", v.State)
			if v.State != api.VMStopped {
				fmt.Fprintf(w, "PID:      %d (%s)\n", v.PID, v.Driver)
				fmt.Fprintf(w, "Started:  %s (%s)\n", v.StartedAt.Local().Format("2006-01-02 15:04:05"), clikit.Ago(v.StartedAt))
			}
			fmt.Fprintf(w, "Image:    %s\n", v.Image)
			fmt.Fprintf(w, "Kernel:   %s%s\n", v.Kernel, kernelModules(cmd.Context(), a, v.Kernel))
			if v.Accel != "" {
				// What it last booted with: a stopped VM keeps it.
				fmt.Fprintf(w, "Accel:    %s\n", v.Accel)
				if v.Template != "" {
					fmt.Fprintf(w, "Template: %s (first started from it, not booted)\n", v.Template)
				}
			}
			if v.Init != "" {
				fmt.Fprintf(w, "Init:     %s (the agent runs as banger-agent.service)\n", v.Init)
			}
			fmt.Fprintf(w, "CPUs:     %d\n", v.CPUs)
			fmt.Fprintf(w, "Memory:   %s\n", clikit.HumanSize(int64(v.MemoryMB)<<20))
			fmt.Fprintf(w, "Disk:     %s\n", clikit.HumanSize(v.DiskBytes))
			fmt.Fprintf(w, "Network:  %s\n", network(v))
			fmt.Fprintf(w, "Ports:    %s\n", clikit.OrDash(ports(v.Ports)))
			if wk := v.Work; wk != nil {
				fmt.Fprintf(w, "Work:     /work, %s disk, seeded %s from %s\n", clikit.HumanSize(wk.DiskBytes), clikit.Ago(wk.SeededAt), wk.Source)
				if wk.Base != "" {
					branch := ""
					if wk.Branch != "" {
						branch = " (" + wk.Branch + ")"
					}
					fmt.Fprintf(w, "  Base:   %s%s\n", wk.Base, branch)
				}
				fmt.Fprintf(w, "  Seed:   %d entries, %s, %s\n", wk.Files, clikit.HumanSize(wk.Bytes), wk.Fingerprint)
				if wk.PulledAt.IsZero() {
					fmt.Fprintf(w, "  Pulled: never (`banger vm pull %s`)\n", v.Name)
				} else {
					fmt.Fprintf(w, "  Pulled: %s as %s (%.12s)\n", clikit.Ago(wk.PulledAt), wk.PulledBranch, wk.PulledCommit)
				}
			}
			if m := v.MadeBy; m != nil {
				fmt.Fprintf(w, "Made by:  banger %s, for %s\n", m.Tool, clikit.OrDash(m.Checkout))
			}
			if len(v.Lent) > 0 {
				fmt.Fprintf(w, "Lent:     %s\n", strings.Join(v.Lent, ", "))
			}
			printSecrets(w, v.Secrets)
			fmt.Fprintf(w, "Dir:      %s\n", v.Dir)
			fmt.Fprintf(w, "Console:  %s\n", v.Console)
			fmt.Fprintf(w, "Created:  %s (%s)\n", v.CreatedAt.Local().Format("2006-01-02 15:04:05"), clikit.Ago(v.CreatedAt))
			if v.State == api.VMRunning {
				fmt.Fprintf(w, "Host key: %s\n", v.HostKey)
				keyPath, _ := guestssh.KeyPath()
				if v.Network == api.NetBridge {
					fmt.Fprintf(w, "SSH:      ssh -i %s root@%s\n", keyPath, v.IP)
				} else {
					fmt.Fprintf(w, "SSH:      ssh -p %d -i %s root@127.0.0.1\n", v.SSHPort, keyPath)
				}
			}
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

// kernelModules says whether a VM's kernel brings its modules to the
// guest: a kernel imported without them has only what is built in.
func kernelModules(ctx context.Context, a *app, name string) string {
	k, err := a.Client().Kernel(ctx, name)
	switch {
	case err != nil:
		return ""
	case !k.Modules || k.Release == "":
		return " (no modules: the guest has only what the kernel has built in; no modprobe, no Docker)"
	}
	return fmt.Sprintf(" (%s, modules read-only at /lib/modules/%s)", k.Release, k.Release)
}

// printSecrets is vm show's account of the secrets a VM was given: for
// each, where it may go, whether its value is held, its uses, and every
// attempt to send its placeholder elsewhere.
func printSecrets(w io.Writer, secs []api.VMSecret) {
	if len(secs) == 0 {
		return
	}
	fmt.Fprintf(w, "Secrets:\n")
	for _, s := range secs {
		held := "held"
		if !s.Held {
			held = "not held (give it again with `vm start --secret`)"
		}
		fmt.Fprintf(w, "  %s: for %s, %s; used %d times", s.Name, strings.Join(s.Hosts, ", "), held, s.Uses)
		if !s.LastUse.IsZero() {
			fmt.Fprintf(w, ", last %s", clikit.Ago(s.LastUse))
		}
		fmt.Fprintln(w)
		for _, at := range s.Attempts {
			fmt.Fprintf(w, "    ATTEMPT: placeholder sent to %s (%s), %d times, last %s\n", at.Host, at.Why, at.Count, clikit.Ago(at.Last))
		}
	}
}

func newVMLogs(a *app) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:               "logs NAME",
		Short:             "Print a VM's console (kernel and agent messages), every boot",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.Client().VMLogs(cmd.Context(), args[0], follow, a.Stdout)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing while the VM runs")
	return cmd
}

func newVMSSH(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh NAME [-- COMMAND]",
		Short: "Open a shell in a running VM",
		Long: `Open an interactive shell in a running VM as root, over SSH to its guest
agent, with your banger key: $BANGER_SSH_KEY, else
~/.config/banger/id_ed25519 (made on first use, with its .pub beside it).
The host key is pinned to the one the guest printed on its console.

'banger vm show NAME' prints the equivalent command for the system's ssh.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			signer, _, err := clikit.UserKey()
			if err != nil {
				return err
			}
			v, err := a.Client().VM(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.session(cmd.Context(), "ssh", v, signer, args[1:], isTerminal(os.Stdin) && len(args) == 1, true)
		},
	}
}

func newVMExec(a *app) *cobra.Command {
	var interactive, tty bool
	cmd := &cobra.Command{
		Use:   "exec NAME [-i] [-t] -- COMMAND [ARG...]",
		Short: "Run a command in a running VM; its exit code is banger's",
		Long: `Run COMMAND in a running VM as root and exit with its exit code (128+N when
a signal N ended it). Standard input is passed on when it is not a
terminal, or with -i; -t gives the command a terminal.`,
		Example: `  banger vm exec web -- uname -r
  banger vm exec -it web -- top
  tar c . | banger vm exec web -- tar x -C /root`,
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			signer, _, err := clikit.UserKey()
			if err != nil {
				return err
			}
			v, err := a.Client().VM(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.session(cmd.Context(), "exec", v, signer, args[1:], tty, interactive)
		},
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "pass standard input on, even from a terminal")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "give the command a terminal")
	return cmd
}

func newVMCp(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files or directories between the host and a running VM",
		Long: `Copy a file or a directory tree to or from a running VM, over SFTP. One side
is VM:PATH. When DST is an existing directory the copy goes inside it.
Modes are kept; ownership in the guest is root's. From a VM, nothing the
guest says lands outside DST: its links are copied as links, never
followed, and no link already in DST is written through.`,
		Example: `  banger vm cp ./notes.txt web:/root/
  banger vm cp web:/var/log ./guest-logs`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcVM, srcPath := splitVMPath(args[0])
			dstVM, dstPath := splitVMPath(args[1])
			if (srcVM == "") == (dstVM == "") {
				return fmt.Errorf("exactly one of SRC and DST must be VM:PATH (like web:/root/file): %w", clikit.ErrInvalidUsage)
			}
			name, remote := srcVM, srcPath
			if dstVM != "" {
				name, remote = dstVM, dstPath
			}
			if remote == "" {
				remote = "/root"
			}
			signer, _, err := clikit.UserKey()
			if err != nil {
				return err
			}
			v, err := a.Client().VM(cmd.Context(), name)
			if err != nil {
				return err
			}
			conn, err := guestssh.Dial(cmd.Context(), v, signer)
			if err != nil {
				return err
			}
			defer conn.Close()
			var n int64
			if dstVM != "" {
				n, err = guestssh.Upload(conn, srcPath, remote)
			} else {
				n, err = guestssh.Download(conn, remote, dstPath)
			}
			if err != nil {
				return err
			}
			ev := api.ActivityEvent{Time: time.Now(), Kind: api.ActFile, Action: "write", Via: api.ViaCLI, Path: remote, Bytes: n, Detail: "vm cp from " + srcPath}
			if dstVM == "" {
				ev.Action, ev.Detail = "read", "vm cp to "+dstPath
			}
			a.recordActivity(cmd.Context(), name, ev)
			fmt.Fprintf(a.Stderr, "copied %s\n", clikit.HumanSize(n))
			return nil
		},
	}
}

// splitVMPath splits "vm:/path"; a local path (even one with a colon
// after a slash, like ./a:b) gives an empty VM name.
func splitVMPath(s string) (vm, path string) {
	i := strings.IndexByte(s, ':')
	if i <= 0 || strings.ContainsRune(s[:i], '/') {
		return "", s
	}
	return s[:i], s[i+1:]
}

func newVMEgress(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "egress NAME",
		Short: "Show the names a bridge-mode VM looked up, and the addresses they resolved to",
		Long: `Show what a bridge-mode VM's DNS lookups resolved, through banger's DNS
forwarder: each name, each address, how often and when. A VM under
--egress learn records everything it looks up; one under --egress allow=...
records its allowed names, whose addresses are what it may reach.

A learned list becomes another VM's allow list:

  banger vm run --egress learn --name probe -- ./build.sh
  banger vm egress probe
  banger vm run --egress from=probe -- ./build.sh`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.CompleteVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			e, err := a.Client().Egress(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, e)
			}
			fmt.Fprintf(a.Stderr, "vm %s, egress %s\n", e.VM, e.Policy)
			t := clikit.NewTable(a.Stdout, "NAME", "ADDRESS", "LOOKUPS", "LAST")
			for _, r := range e.Resolved {
				t.Row(r.Name, clikit.OrDash(r.Addr), fmt.Sprint(r.Count), clikit.Ago(r.Last))
			}
			t.Flush()
			if len(e.Resolved) == 0 {
				fmt.Fprintln(a.Stderr, "no lookups recorded (only --egress learn and allow= record them)")
			}
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}
