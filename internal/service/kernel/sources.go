package kernel

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/banger-dev/banger/internal/format/bzimage"
	"github.com/banger-dev/banger/internal/format/debpkg"
	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/kit/digest"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/service/fetch"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// fetch fills dir from one catalog source.
func (s *Service) fetch(ctx context.Context, src api.KernelSource, dir string, p operation.Progress) (staged, error) {
	switch src.Kind {
	case api.SourceURL:
		return s.fetchURL(ctx, src, dir, p)
	case api.SourceDeb:
		deb := filepath.Join(dir, "download.deb")
		p.Stage("download", "downloading %s", src.URL)
		digest, err := s.d.Downloader.FetchFile(ctx, src.URL, deb, src.SHA256, p)
		if err != nil {
			return staged{}, err
		}
		st, err := s.unpackDebFile(ctx, deb, dir, p)
		if err != nil {
			return staged{}, err
		}
		st.sourceKind, st.source, st.digest = api.SourceDeb, src.URL, digest
		return st, os.Remove(deb)
	case api.SourceApt:
		return s.fetchApt(ctx, src.Package, dir, p)
	case api.SourceOCI:
		return s.fetchOCI(ctx, src.Ref, dir, p)
	}
	return staged{}, fmt.Errorf("unknown source kind %q: %w", src.Kind, errdefs.ErrInvalid)
}

func (s *Service) fetchURL(ctx context.Context, src api.KernelSource, dir string, p operation.Progress) (staged, error) {
	dl := filepath.Join(dir, "download")
	p.Stage("download", "downloading %s", src.URL)
	digest, err := s.d.Downloader.FetchFile(ctx, src.URL, dl, src.SHA256, p)
	if err != nil {
		return staged{}, err
	}
	if err := s.placeKernel(dl, dir, p); err != nil {
		return staged{}, err
	}
	return staged{sourceKind: api.SourceURL, source: src.URL, digest: digest}, nil
}

// fetchApt downloads a package with the host's own apt configuration, which
// verifies it against the signed package index. A metapackage (like
// linux-image-amd64) is followed to the kernel package it depends on.
func (s *Service) fetchApt(ctx context.Context, pkg, dir string, p operation.Progress) (staged, error) {
	if _, err := s.d.Runner.LookPath("apt-get"); err != nil {
		return staged{}, fmt.Errorf("apt source needs apt-get, and this host has none (not Debian or Ubuntu): %w", errdefs.ErrUnavailable)
	}
	via := ""
	for hop := 0; hop < 3; hop++ {
		aptDir := filepath.Join(dir, "apt")
		if err := os.RemoveAll(aptDir); err != nil {
			return staged{}, err
		}
		if err := os.MkdirAll(aptDir, 0o700); err != nil {
			return staged{}, err
		}
		p.Stage("download", "apt-get download %s (through this host's package sources)", pkg)
		_, err := s.d.Runner.Run(ctx, runner.Cmd{
			Name: "apt-get",
			// The sandbox user cannot write into the daemon's private
			// staging directory; the download is verified by apt either way.
			Args: []string{"download", "-q", "-o", "APT::Sandbox::User=root", pkg},
			Dir:  aptDir,
		})
		if err != nil {
			if ctx.Err() != nil {
				return staged{}, ctx.Err()
			}
			hint := ""
			if strings.Contains(err.Error(), "Unable to locate package") || strings.Contains(err.Error(), "has no installation candidate") {
				hint = " (is the package index current? run `apt-get update`)"
			}
			return staged{}, fmt.Errorf("apt-get download %s: %w%s: %w", pkg, err, hint, errdefs.ErrUnavailable)
		}
		debs, _ := filepath.Glob(filepath.Join(aptDir, "*.deb"))
		if len(debs) != 1 {
			return staged{}, fmt.Errorf("apt-get download %s left %d .deb files, want 1: %w", pkg, len(debs), errdefs.ErrUnavailable)
		}
		digest, err := fileSHA256(debs[0])
		if err != nil {
			return staged{}, err
		}
		st, err := s.unpackDebFile(ctx, debs[0], dir, p)
		var meta *metaPackageError
		if errors.As(err, &meta) {
			p.Stage("resolve", "%s is a metapackage: following it to %s", pkg, meta.dependsOn)
			via = fmt.Sprintf(" (via %s)", pkg)
			pkg = meta.dependsOn
			continue
		}
		if err != nil {
			return staged{}, err
		}
		st.sourceKind, st.source, st.digest = api.SourceApt, filepath.Base(debs[0])+via, digest
		return st, os.RemoveAll(aptDir)
	}
	return staged{}, fmt.Errorf("apt package %s: too many metapackage hops: %w", pkg, errdefs.ErrInvalid)
}

// metaPackageError says a package holds no kernel but depends on one.
type metaPackageError struct{ pkg, dependsOn string }

func (e *metaPackageError) Error() string {
	return fmt.Sprintf("package %s holds no kernel; it depends on %s", e.pkg, e.dependsOn)
}

// fetchOCI unpacks an OCI image laid out as Weave Ignite's kernel images
// are: /boot/vmlinux and /lib/modules/<release>/.
func (s *Service) fetchOCI(ctx context.Context, ref, dir string, p operation.Progress) (staged, error) {
	if s.d.Images == nil {
		return staged{}, fmt.Errorf("oci source: no registry client: %w", errdefs.ErrUnavailable)
	}
	res, err := s.d.Images.Image(ctx, ref, func(from string) { p.Stage("download", "pulling %s", from) })
	if err != nil {
		return staged{}, err
	}
	p.Stage("unpack", "unpacking %s (%s)", ref, res.Digest)
	rc := mutate.Extract(res.Image)
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	x := &tarx.Extractor{Root: filepath.Join(dir, layout.KernelModules), Limit: s.d.MaxUnpacked}
	if err := os.MkdirAll(x.Root, 0o700); err != nil {
		return staged{}, err
	}
	var kernelFile string
	bad := func(err error) error { return fmt.Errorf("unpack %s: %w: %w", ref, err, errdefs.ErrInvalid) }
	err = fetch.EachEntry(ctx, tar.NewReader(rc), bad, func(h *tar.Header, body io.Reader) error {
		rel, err := tarx.Clean(h.Name)
		if err != nil {
			return fmt.Errorf("unpack %s: %w", ref, err)
		}
		switch {
		case (rel == "boot/vmlinux" || rel == "boot/vmlinuz") && h.Typeflag == tar.TypeReg:
			kernelFile = filepath.Join(dir, "oci-kernel")
			if err := copyLimited(kernelFile, body, h.Size, s.d.MaxUnpacked); err != nil {
				return fmt.Errorf("unpack %s: %s: %w", ref, rel, err)
			}
		case strings.HasPrefix(rel, "lib/modules/"):
			if err := x.Entry(strings.TrimPrefix(rel, "lib/modules/"), h, body); err != nil {
				return fmt.Errorf("unpack %s: %w", ref, err)
			}
		}
		return nil
	})
	if err != nil {
		return staged{}, err
	}
	if kernelFile == "" {
		return staged{}, fmt.Errorf("image %s holds no /boot/vmlinux: not a kernel image: %w", ref, errdefs.ErrInvalid)
	}
	if err := s.placeKernel(kernelFile, dir, p); err != nil {
		return staged{}, err
	}
	return staged{sourceKind: api.SourceOCI, source: res.From, digest: res.Digest}, nil
}

// unpackDebFile takes /boot/vmlinuz-* and the modules tree out of a kernel
// .deb, and extracts vmlinux from the bzImage.
func (s *Service) unpackDebFile(ctx context.Context, deb, dir string, p operation.Progress) (staged, error) {
	f, err := os.Open(deb)
	if err != nil {
		return staged{}, fmt.Errorf("open package: %w: %w", err, errdefs.ErrInvalid)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return staged{}, err
	}
	p.Stage("unpack", "unpacking %s", filepath.Base(deb))
	p.Bytes("unpack", 0, fi.Size())
	cr := operation.NewReader(ctx, f, 4<<20, func(n int64) { p.Bytes("unpack", n, fi.Size()) })
	modRoot := filepath.Join(dir, layout.KernelModules)
	if err := os.MkdirAll(modRoot, 0o700); err != nil {
		return staged{}, err
	}
	x := &tarx.Extractor{Root: modRoot, Limit: s.d.MaxUnpacked}
	var ctl debpkg.Control
	vmlinuz := ""
	err = debpkg.Read(cr, debpkg.Handler{
		Control: func(c debpkg.Control) error { ctl = c; return nil },
		Data: func(tr *tar.Reader) error {
			return fetch.EachEntry(ctx, tr, badDataTar, func(h *tar.Header, body io.Reader) error {
				rel, err := tarx.Clean(h.Name)
				if err != nil {
					return err
				}
				rel = strings.TrimPrefix(rel, "usr/")
				switch {
				case strings.HasPrefix(rel, "boot/vmlinuz-") && h.Typeflag == tar.TypeReg:
					if vmlinuz != "" {
						return fmt.Errorf("package holds two kernels (%s and %s): %w", vmlinuz, rel, errdefs.ErrInvalid)
					}
					vmlinuz = rel
					if err := copyLimited(filepath.Join(dir, layout.KernelVMLinuz), body, h.Size, s.d.MaxUnpacked); err != nil {
						return fmt.Errorf("%s: %w", rel, err)
					}
				case strings.HasPrefix(rel, "lib/modules/"):
					return x.Entry(strings.TrimPrefix(rel, "lib/modules/"), h, body)
				}
				return nil
			})
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return staged{}, ctx.Err()
		}
		return staged{}, fmt.Errorf("read %s: %w", filepath.Base(deb), err)
	}
	if vmlinuz == "" {
		for _, d := range ctl.Depends() {
			if strings.HasPrefix(d, "linux-image-") {
				return staged{}, &metaPackageError{pkg: ctl.Package(), dependsOn: d}
			}
		}
		return staged{}, fmt.Errorf("package %s has no /boot/vmlinuz-*: not a kernel image package: %w", errdefs.Quote(ctl.Package()), errdefs.ErrInvalid)
	}
	if err := s.extractVMLinux(filepath.Join(dir, layout.KernelVMLinuz), dir, p); err != nil {
		return staged{}, err
	}
	return staged{version: ctl["Version"]}, nil
}

// badDataTar says what is wrong with a package whose data.tar cannot be
// read.
func badDataTar(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("data.tar is truncated: %w", errdefs.ErrInvalid)
	}
	return fmt.Errorf("data.tar: %w: %w", err, errdefs.ErrInvalid)
}

// placeKernel moves a downloaded kernel file into place: an ELF vmlinux as
// is, a bzImage as vmlinuz with its vmlinux extracted beside it.
func (s *Service) placeKernel(src, dir string, p operation.Progress) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	kind := bzimage.Detect(f)
	f.Close()
	switch kind {
	case bzimage.ELF:
		return os.Rename(src, filepath.Join(dir, layout.KernelVMLinux))
	case bzimage.BzImage:
		vmlinuz := filepath.Join(dir, layout.KernelVMLinuz)
		if err := os.Rename(src, vmlinuz); err != nil {
			return err
		}
		return s.extractVMLinux(vmlinuz, dir, p)
	}
	return fmt.Errorf("kernel file is neither an ELF vmlinux nor a bzImage: %w", errdefs.ErrInvalid)
}

func (s *Service) extractVMLinux(vmlinuz, dir string, p operation.Progress) error {
	f, err := os.Open(vmlinuz)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, comp, err := bzimage.Payload(f)
	if err != nil {
		return fmt.Errorf("vmlinuz: %w", err)
	}
	p.Stage("extract", "extracting vmlinux from the bzImage (%s)", comp)
	out, err := os.Create(filepath.Join(dir, layout.KernelVMLinux))
	if err != nil {
		return err
	}
	if _, err := bzimage.Extract(f, out, s.d.MaxUnpacked); err != nil {
		out.Close()
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	return out.Close()
}

func copyLimited(dst string, r io.Reader, size, limit int64) error {
	if limit > 0 && size > limit {
		return fmt.Errorf("%d bytes is over the %d-byte limit: %w", size, limit, errdefs.ErrInvalid)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("archive ends mid-file (%d of %d bytes): %w", n, size, errdefs.ErrInvalid)
	}
	return nil
}

func fileSHA256(path string) (string, error) { return digest.File(path) }
