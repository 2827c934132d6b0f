// Package kernelcmd holds 'banger kernel': the kernels VMs boot, pulled
// from the catalog or imported from local files.
package kernelcmd

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// app is the shared App, with the methods this group's commands share.
type app struct{ *clikit.App }

// New builds 'banger kernel'.
func New(ca *clikit.App) *cobra.Command {
	a := &app{ca}
	cmd := &cobra.Command{
		Use:     "kernel",
		Aliases: []string{"kernels"},
		Short:   "Manage the kernels VMs boot",
		Long: `Kernels are published in the daemon's state directory, each with an
uncompressed vmlinux (what qemu's PVH entry and Firecracker boot) and, for
modular kernels, its modules tree.

They come from the kernel catalog (banger kernel catalog): a .deb by URL,
a package from this host's own apt sources, a vmlinux by URL, or an OCI
image; or from local files with banger kernel import.

Pulled kernels are shared by every user of the daemon. A kernel you
import is yours alone, and root's, until you share it (--shared, or
banger kernel share).`,
		GroupID: "objects",
	}
	cmd.AddCommand(newKernelLs(a), newKernelShow(a), newKernelPull(a), newKernelImport(a), newKernelRm(a), newKernelShare(a), newKernelCatalog(a))
	return cmd
}

func (a *app) completeKernels(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return clikit.Complete(cmd, args, false, a.Client().Kernels, func(k api.Kernel) string { return k.Name + "\t" + k.Version })
}

func (a *app) completeCatalogKernels(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return clikit.Complete(cmd, args, false, a.Client().KernelCatalog, func(e api.KernelCatalogEntry) string { return e.Name + "\t" + e.Description })
}

func newKernelLs(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List published kernels",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			ks, err := a.Client().Kernels(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, ks)
			}
			owners := clikit.SeesOwners()
			t := clikit.NewTable(a.Stdout, clikit.OwnerCol(owners, "OWNER", "NAME", "SHARED", "VERSION", "RELEASE", "MODULES", "SIZE", "SOURCE", "CREATED")...)
			for _, k := range ks {
				t.Row(clikit.OwnerCol(owners, clikit.OwnerName(k.Owner), k.Name, clikit.YesNo(k.Shared), k.Version, clikit.OrDash(k.Release), clikit.YesNo(k.Modules), clikit.HumanSize(k.Size), k.SourceKind, clikit.Ago(k.CreatedAt))...)
			}
			t.Flush()
			if len(ks) == 0 {
				fmt.Fprintln(a.Stderr, "no kernels yet: see `banger kernel catalog`, then `banger kernel pull NAME`")
			}
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newKernelShow(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a kernel's files, sizes, version, source and digest",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeKernels,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			k, err := a.Client().Kernel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, k)
			}
			w := a.Stdout
			fmt.Fprintf(w, "Name:      %s\n", k.Name)
			fmt.Fprintf(w, "Owner:     %s\n", clikit.OwnerName(k.Owner))
			fmt.Fprintf(w, "Shared:    %s\n", clikit.YesNo(k.Shared))
			fmt.Fprintf(w, "Version:   %s\n", k.Version)
			fmt.Fprintf(w, "Release:   %s\n", clikit.OrDash(k.Release))
			fmt.Fprintf(w, "Arch:      %s\n", k.Arch)
			fmt.Fprintf(w, "Modules:   %s\n", clikit.YesNo(k.Modules))
			fmt.Fprintf(w, "Source:    %s %s\n", k.SourceKind, k.Source)
			fmt.Fprintf(w, "Digest:    %s\n", k.Digest)
			fmt.Fprintf(w, "Created:   %s (%s)\n", k.CreatedAt.Local().Format("2006-01-02 15:04:05"), clikit.Ago(k.CreatedAt))
			fmt.Fprintf(w, "Directory: %s\n", k.Dir)
			fmt.Fprintf(w, "Size:      %s\n", clikit.HumanSize(k.Size))
			fmt.Fprintln(w, "Files:")
			t := clikit.NewTable(w, "  NAME", "SIZE", "SHA256")
			for _, f := range k.Files {
				sum := strings.TrimPrefix(f.SHA256, "sha256:")
				if f.Count > 0 {
					sum = fmt.Sprintf("(%d files)", f.Count)
				}
				t.Row("  "+f.Name, clikit.HumanSize(f.Size), sum)
			}
			t.Flush()
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newKernelPull(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "pull NAME",
		Short: "Download, verify and publish a kernel from the catalog",
		Long: `Pull a kernel named in the kernel catalog. Its sources are tried in order
and the first that works wins; progress says which. Pulling a kernel that
is already local does nothing.

Ctrl-C cancels the pull in the daemon and undoes what it had done. If the
client is killed instead, the daemon finishes the pull on its own.`,
		Example:           "  banger kernel pull debian-bookworm",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeCatalogKernels,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			p := a.Progress()
			k, err := a.Client().PullKernel(cmd.Context(), args[0], p.Event)
			p.Done()
			if err != nil {
				return err
			}
			return a.printPublished(k, output)
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func (a *app) printPublished(k api.Kernel, output string) error {
	if output == "json" {
		return clikit.PrintJSON(a.Stdout, k)
	}
	mods := "no modules"
	if k.Modules {
		mods = "modules " + k.Release
	}
	fmt.Fprintf(a.Stdout, "kernel %s %s: %s, %s, %s\n", k.Name, k.Version, clikit.HumanSize(k.Size), mods, k.Digest)
	return nil
}

func newKernelImport(a *app) *cobra.Command {
	var req api.KernelImportRequest
	var output string
	cmd := &cobra.Command{
		Use:   "import NAME (--deb FILE | --kernel FILE [--initrd FILE] [--modules DIR])",
		Short: "Publish a kernel from local files",
		Long: `Publish a kernel from files on this host: a kernel .deb, or a kernel file
(an ELF vmlinux, or a bzImage from which banger extracts the vmlinux) with
an optional initrd and modules directory (/lib/modules/RELEASE, or a
directory holding one RELEASE).

The files are read here, with your own rights, and sent to the daemon
(which never opens a path a client names): a file you cannot read cannot
be imported.

The kernel is yours: other users of the daemon neither see nor boot it
unless you pass --shared (or share it later with banger kernel share).
NAME may not be a kernel catalog name.`,
		Example: `  banger kernel import my-6.1 --deb ./linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb
  banger kernel import host --kernel /boot/vmlinuz-$(uname -r) --modules /lib/modules/$(uname -r)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			if (req.Deb == "") == (req.Kernel == "") {
				return fmt.Errorf("give either --deb FILE or --kernel FILE: %w", clikit.ErrInvalidUsage)
			}
			req.Name = args[0]
			if req.Deb != "" {
				req.Source = clikit.AbsPath(req.Deb)
			} else {
				req.Source = clikit.AbsPath(req.Kernel)
			}
			return a.importKernel(cmd.Context(), req, output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Deb, "deb", "", "a kernel .deb package")
	f.StringVar(&req.Kernel, "kernel", "", "a vmlinux or bzImage file")
	f.StringVar(&req.Initrd, "initrd", "", "an initrd to keep with the kernel")
	f.StringVar(&req.Modules, "modules", "", "the kernel's modules directory")
	f.StringVar(&req.Version, "version", "", "version to record (default: from the package, else the modules release)")
	clikit.SharedFlag(cmd, &req.Shared, "kernel")
	cmd.MarkFlagFilename("deb", "deb")
	cmd.MarkFlagFilename("kernel")
	cmd.MarkFlagFilename("initrd")
	cmd.MarkFlagDirname("modules")
	clikit.OutputFlag(cmd, &output)
	return cmd
}

// importKernel sends the files req names (paths still), then publishes
// the kernel they make.
func (a *app) importKernel(ctx context.Context, req api.KernelImportRequest, output string) error {
	files := []struct {
		flag string
		v    *string
		dir  bool
		size int64
	}{{flag: "deb", v: &req.Deb}, {flag: "kernel", v: &req.Kernel}, {flag: "initrd", v: &req.Initrd}, {flag: "modules", v: &req.Modules, dir: true}}
	// All readable before any is sent: a refused one must not
	// leave the others waiting in the daemon.
	for i, f := range files {
		if *f.v != "" {
			n, err := clikit.Readable(f.flag, *f.v, f.dir)
			if err != nil {
				return err
			}
			files[i].size = n
		}
	}
	p := a.Progress()
	defer p.Done()
	for _, f := range files {
		if *f.v == "" {
			continue
		}
		id, err := a.Upload(ctx, p, f.flag, *f.v, f.size, f.dir)
		if err != nil {
			return err
		}
		*f.v = id
	}
	k, err := a.Client().ImportKernel(ctx, req, p.Event)
	p.Done()
	if err != nil {
		return err
	}
	return a.printPublished(k, output)
}

func newKernelRm(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove kernels no VM uses",
		Long: `Remove kernels no VM or snapshot uses, whoever owns those. A pulled
kernel is shared: any user may remove it, and it is pulled again when
needed. An imported kernel may be removed by its owner and root only.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeKernels,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.RemoveEach(args, "kernel", func(name string) error { return a.Client().RemoveKernel(cmd.Context(), name) })
		},
	}
}

func newKernelShare(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "share NAME",
		Short: "Let every user of the daemon see and boot a kernel of yours",
		Long: `Share a kernel you imported: every user of the daemon then sees it and
may boot VMs with it; removing it stays yours (and root's). Sharing
cannot be undone, since others' VMs may come to use the kernel. Pulled
kernels are shared already.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeKernels,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			k, err := a.Client().ShareKernel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printPublished(k, output)
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newKernelCatalog(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "List the kernels banger knows how to fetch",
		Long: `List the kernel catalog: the catalog built into banger, merged with the
files named by kernel_catalogs in the daemon's config. LOCAL says whether
the kernel is already published.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			es, err := a.Client().KernelCatalog(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, es)
			}
			t := clikit.NewTable(a.Stdout, "NAME", "VERSION", "LOCAL", "SOURCES", "CATALOG", "DESCRIPTION")
			for _, e := range es {
				var kinds []string
				for _, s := range e.Sources {
					kinds = append(kinds, s.Kind)
				}
				t.Row(e.Name, e.Version, clikit.YesNo(e.Local), strings.Join(kinds, ","), e.Catalog, e.Description)
			}
			t.Flush()
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}
