// Package imagecmd holds 'banger image': the root disks VMs boot from,
// pulled, registered from local files, or promoted from a VM.
package imagecmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// app is the shared App, with the methods this group's commands share.
type app struct{ *clikit.App }

// New builds 'banger image'.
func New(ca *clikit.App) *cobra.Command {
	a := &app{ca}
	cmd := &cobra.Command{
		Use:     "image",
		Aliases: []string{"images"},
		Short:   "Manage the root disks VMs boot from",
		Long: `Images are ext4 root disks, published in the daemon's state directory and
ready to boot: every image gets banger's own files (/.banger/), a hostname,
resolv.conf, hosts and the configured SSH keys.

They come from the image catalog (banger image catalog), from any OCI
reference (its layers flattened, whiteouts honoured, written as ext4
without mounting anything), or from an existing ext4 file (register).

Pulled images are shared by every user of the daemon. An image you make
(register, promote) is yours alone, and root's, until you share it
(--shared, or banger image share).`,
		GroupID: "objects",
	}
	cmd.AddCommand(newImageLs(a), newImageShow(a), newImagePull(a), newImageRegister(a), newImagePromote(a), newImageRm(a), newImageShare(a), newImageCatalog(a))
	return cmd
}

func (a *app) completeImages(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return clikit.Complete(cmd, args, false, a.Client().Images, func(im api.Image) string { return im.Name + "\t" + im.Source })
}

func newImageLs(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List published images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			ims, err := a.Client().Images(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, ims)
			}
			owners := clikit.SeesOwners()
			t := clikit.NewTable(a.Stdout, clikit.OwnerCol(owners, "OWNER", "NAME", "SHARED", "KERNEL", "SIZE", "STORED", "FILES", "SOURCE", "CREATED")...)
			for _, im := range ims {
				t.Row(clikit.OwnerCol(owners, clikit.OwnerName(im.Owner), im.Name, clikit.YesNo(im.Shared), im.Kernel, clikit.HumanSize(im.Size), clikit.HumanSize(im.Stored), fmt.Sprint(im.Files), im.SourceKind+" "+im.Source, clikit.Ago(im.CreatedAt))...)
			}
			t.Flush()
			if len(ims) == 0 {
				fmt.Fprintln(a.Stderr, "no images yet: see `banger image catalog`, then `banger image pull NAME`")
			}
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newImageShow(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show an image's source, digest, kernel, size and layers",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeImages,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			im, err := a.Client().Image(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, im)
			}
			w := a.Stdout
			fmt.Fprintf(w, "Name:     %s\n", im.Name)
			fmt.Fprintf(w, "Owner:    %s\n", clikit.OwnerName(im.Owner))
			fmt.Fprintf(w, "Shared:   %s\n", clikit.YesNo(im.Shared))
			fmt.Fprintf(w, "Source:   %s %s\n", im.SourceKind, im.Source)
			fmt.Fprintf(w, "Digest:   %s\n", im.Digest)
			fmt.Fprintf(w, "Kernel:   %s\n", im.Kernel)
			fmt.Fprintf(w, "Size:     %s (file system; %s stored on the host)\n", clikit.HumanSize(im.Size), clikit.HumanSize(im.Stored))
			fmt.Fprintf(w, "Layers:   %d\n", im.Layers)
			fmt.Fprintf(w, "Files:    %d\n", im.Files)
			fmt.Fprintf(w, "Disk:     %s\n", im.Disk)
			fmt.Fprintf(w, "Created:  %s (%s)\n", im.CreatedAt.Local().Format("2006-01-02 15:04:05"), clikit.Ago(im.CreatedAt))
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newImagePull(a *app) *cobra.Command {
	var req api.ImagePullRequest
	var output string
	cmd := &cobra.Command{
		Use:   "pull NAME-or-REF",
		Short: "Pull a catalog image or any OCI image and publish it as a bootable disk",
		Long: `Pull an image. NAME is an image catalog entry, whose sources are tried in
order (progress says which won); REF is any OCI reference
(docker.io/library/debian:bookworm, 127.0.0.1:5000/x:y, ...@sha256:...).

Registry mirrors from the daemon's config are tried before the registry
itself, credentials come from the docker config of the daemon's user, and
linux/amd64 is picked from multi-arch indexes. Layers may be gzip or zstd.
Ctrl-C cancels the pull in the daemon and undoes it.`,
		Example: `  banger image pull debian-bookworm
  banger image pull docker.io/library/alpine:3.20 --name alpine`,
		Args: cobra.ExactArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			return clikit.Complete(cmd, args, false, a.Client().ImageCatalog, func(e api.ImageCatalogEntry) string { return e.Name + "\t" + e.Description })
		},

		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			req.Name = args[0]
			p := a.Progress()
			im, err := a.Client().PullImage(cmd.Context(), req, p.Event)
			p.Done()
			if err != nil {
				return err
			}
			return a.printImage(im, output)
		},
	}
	cmd.Flags().StringVar(&req.As, "name", "", "local name for an image pulled by reference (default: from the reference)")
	cmd.Flags().StringVar(&req.Kernel, "kernel", "", "kernel the image boots with (default: the catalog's, else default_kernel_name)")
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func (a *app) printImage(im api.Image, output string) error {
	if output == "json" {
		return clikit.PrintJSON(a.Stdout, im)
	}
	fmt.Fprintf(a.Stdout, "image %s: %s, %d files, kernel %s, %s\n", im.Name, clikit.HumanSize(im.Size), im.Files, im.Kernel, im.Digest)
	return nil
}

func newImageRegister(a *app) *cobra.Command {
	var req api.ImageRegisterRequest
	var output string
	cmd := &cobra.Command{
		Use:   "register NAME --rootfs FILE [--kernel K]",
		Short: "Adopt an existing ext4 root file system as an image",
		Long: `Adopt an existing ext4 file as an image: it is read here, with your own
rights, and sent to the daemon (which never opens a path a client names),
which checks it with e2fsck.

The image is yours: other users of the daemon neither see nor boot it
unless you pass --shared (or share it later with banger image share).
NAME may not be an image catalog name.`,
		Example: "  banger image register mine --rootfs ./rootfs.ext4 --kernel debian-bookworm",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			if req.Rootfs == "" {
				return fmt.Errorf("--rootfs FILE is required: %w", clikit.ErrInvalidUsage)
			}
			req.Name, req.Source = args[0], clikit.AbsPath(req.Rootfs)
			size, err := clikit.Readable("rootfs", req.Rootfs, false)
			if err != nil {
				return err
			}
			p := a.Progress()
			defer p.Done()
			id, err := a.Upload(cmd.Context(), p, "rootfs", req.Rootfs, size, false)
			if err != nil {
				return err
			}
			req.Rootfs = id
			im, err := a.Client().RegisterImage(cmd.Context(), req, p.Event)
			p.Done()
			if err != nil {
				return err
			}
			return a.printImage(im, output)
		},
	}
	cmd.Flags().StringVar(&req.Rootfs, "rootfs", "", "the ext4 file")
	cmd.Flags().StringVar(&req.Kernel, "kernel", "", "kernel the image boots with (default: default_kernel_name)")
	clikit.SharedFlag(cmd, &req.Shared, "image")
	cmd.MarkFlagFilename("rootfs")
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newImagePromote(a *app) *cobra.Command {
	var output string
	var shared bool
	cmd := &cobra.Command{
		Use:   "promote VM NAME",
		Short: "Make an image of a stopped VM's root disk",
		Long: `Make an image of a stopped VM's root disk: what was installed or changed in
it boots in every VM made from the image. The VM's copy-on-write disk is
flattened into a new ext4 file, its identity removed (the guest's SSH host
key, machine ID and random seed: each new VM makes its own), checked with
e2fsck and published like any image, booting with the VM's kernel. Keys the
VM was given and credentials lent to it were never on its disk. The VM is
left as it was; its work disk (/work) is not part of the image.

The image is yours: other users of the daemon neither see nor boot it
unless you pass --shared (or share it later with banger image share).
NAME may not be an image catalog name.`,
		Example: `  banger vm run --name base -- sh -c "apt-get update && apt-get install -y jq"
  banger vm stop base
  banger image promote base with-jq
  banger vm run --image with-jq -- jq --version`,
		Args: cobra.ExactArgs(2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, tc string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp // the new image's name
			}
			return a.CompleteVMs(cmd, args, tc)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			p := a.Progress()
			defer p.Done()
			im, err := a.Client().PromoteImage(cmd.Context(), api.ImagePromoteRequest{VM: args[0], Name: args[1], Shared: shared}, p.Event)
			p.Done()
			if err != nil {
				return err
			}
			return a.printImage(im, output)
		},
	}
	clikit.SharedFlag(cmd, &shared, "image")
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newImageRm(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove images no VM uses",
		Long: `Remove images no VM or snapshot uses, whoever owns those. A pulled image
is shared: any user may remove it, and it is pulled again when needed.
An image made by register or promote may be removed by its owner and
root only.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeImages,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.RemoveEach(args, "image", func(name string) error { return a.Client().RemoveImage(cmd.Context(), name) })
		},
	}
}

func newImageShare(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "share NAME",
		Short: "Let every user of the daemon see and boot an image of yours",
		Long: `Share an image you made (register, promote): every user of the daemon
then sees it and may boot VMs of it; removing it stays yours (and root's).
Sharing cannot be undone, since others' VMs may come to use the image.
Pulled images are shared already.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeImages,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			im, err := a.Client().ShareImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printImage(im, output)
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}

func newImageCatalog(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "List the images banger knows how to fetch or build",
		Long: `List the image catalog: the catalog built into banger, merged with the
files named by image_catalogs in the daemon's config. LOCAL says whether the
image is already published.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clikit.CheckOutput(output); err != nil {
				return err
			}
			es, err := a.Client().ImageCatalog(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return clikit.PrintJSON(a.Stdout, es)
			}
			t := clikit.NewTable(a.Stdout, "NAME", "KERNEL", "LOCAL", "SOURCES", "CATALOG", "DESCRIPTION")
			for _, e := range es {
				var kinds []string
				for _, s := range e.Sources {
					kinds = append(kinds, s.Kind)
				}
				t.Row(e.Name, e.Kernel, clikit.YesNo(e.Local), strings.Join(kinds, ","), e.Catalog, e.Description)
			}
			t.Flush()
			return nil
		},
	}
	clikit.OutputFlag(cmd, &output)
	return cmd
}
