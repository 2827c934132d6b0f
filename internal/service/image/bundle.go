package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/format/catalogfile"
	"github.com/banger-dev/banger/internal/kit/digest"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/fetch"
	"github.com/banger-dev/banger/internal/service/upload"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// BundleManifest is manifest.json inside a bundle.
type BundleManifest struct {
	Name   string `json:"name"`
	Kernel string `json:"kernel"`
	Rootfs string `json:"rootfs"`
	// SHA256 maps each file of the bundle to its checksum.
	SHA256 map[string]string `json:"sha256"`
}

// ParseBundleManifest reads and checks a bundle manifest.
func ParseBundleManifest(b []byte) (BundleManifest, error) {
	var m BundleManifest
	if err := catalogfile.Decode("bundle manifest", "manifest.json", b, &m); err != nil {
		return m, err
	}
	if m.Kernel != "" {
		if err := names.Validate("kernel", m.Kernel); err != nil {
			return m, fmt.Errorf("bundle manifest: %w", err)
		}
	}
	if m.Rootfs == "" || strings.ContainsAny(m.Rootfs, "/\\") || m.Rootfs == "." || m.Rootfs == ".." || m.Rootfs == "manifest.json" {
		return m, fmt.Errorf("bundle manifest: rootfs %s must be a plain file name: %w", errdefs.Quote(m.Rootfs), errdefs.ErrInvalid)
	}
	if len(m.SHA256[m.Rootfs]) != 64 {
		return m, fmt.Errorf("bundle manifest: no sha256 for %s: %w", m.Rootfs, errdefs.ErrInvalid)
	}
	return m, nil
}

// pullBundle downloads a bundle, checks it and takes its ext4 rootfs.
func (s *Service) pullBundle(ctx context.Context, src api.ImageSource, dir string, p operation.Progress) (built, error) {
	tarball := filepath.Join(dir, "bundle")
	p.Stage("download", "downloading %s", src.URL)
	digest, err := s.d.Downloader.FetchFile(ctx, src.URL, tarball, src.SHA256, p)
	if err != nil {
		return built{}, err
	}
	m, err := s.unpackBundle(ctx, tarball, dir, p)
	os.Remove(tarball)
	if err != nil {
		return built{}, err
	}
	if m.Kernel != "" {
		if _, err := s.d.Kernels.Ensure(ctx, m.Kernel, p); err != nil {
			return built{}, fmt.Errorf("bundle kernel %s: %w", m.Kernel, err)
		}
	}
	return built{sourceKind: api.SourceBundle, source: src.URL, digest: digest, kernel: m.Kernel, layers: 1}, nil
}

func (s *Service) unpackBundle(ctx context.Context, tarball, dir string, p operation.Progress) (BundleManifest, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return BundleManifest{}, err
	}
	defer f.Close()
	r, closeFn, err := openDecompressed(f)
	if err != nil {
		return BundleManifest{}, fmt.Errorf("bundle: %w", err)
	}
	defer closeFn()
	p.Stage("unpack", "unpacking the bundle")
	m, got, err := s.bundleFiles(ctx, tar.NewReader(operation.NewReader(ctx, r, 0, nil)), dir)
	if err != nil {
		return m, err
	}
	for file, want := range m.SHA256 {
		if got[file] != want {
			return m, fmt.Errorf("bundle: %s has sha256 %s, the manifest says %s: %w", errdefs.Quote(file), errdefs.Quote(got[file]), errdefs.Quote(want), errdefs.ErrChecksum)
		}
	}
	rootfs := filepath.Join(dir, layout.ImageRootfs)
	if err := os.Rename(filepath.Join(dir, "bundle-"+m.Rootfs), rootfs); err != nil {
		return m, fmt.Errorf("bundle: rootfs %s: %w: %w", m.Rootfs, err, errdefs.ErrInvalid)
	}
	p.Stage("verify", "checking the root file system")
	if err := s.ext4.Check(ctx, rootfs); err != nil {
		return m, err
	}
	return m, s.ext4.Grow(ctx, rootfs)
}

// bundleFiles unpacks a bundle's files into dir as bundle-<name>, and
// returns its manifest and each file's sha256 as unpacked.
func (s *Service) bundleFiles(ctx context.Context, tr *tar.Reader, dir string) (BundleManifest, map[string]string, error) {
	var m BundleManifest
	got := map[string]string{}
	var haveManifest bool
	var written int64
	bad := func(err error) error {
		return fmt.Errorf("bundle: %v (truncated or not a tarball): %w", err, errdefs.ErrInvalid)
	}
	err := fetch.EachEntry(ctx, tr, bad, func(h *tar.Header, body io.Reader) error {
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg || strings.ContainsAny(name, "/\\") || name == "" || name == "." || name == ".." {
			return fmt.Errorf("bundle: unexpected entry %s: a bundle holds manifest.json and plain files only: %w", errdefs.Quote(h.Name), errdefs.ErrInvalid)
		}
		if name == "manifest.json" {
			b, err := io.ReadAll(io.LimitReader(body, 1<<20))
			if err != nil {
				return fmt.Errorf("bundle manifest: %w: %w", err, errdefs.ErrInvalid)
			}
			if m, err = ParseBundleManifest(b); err != nil {
				return err
			}
			haveManifest = true
			return nil
		}
		if s.d.MaxUnpacked > 0 && written+h.Size > s.d.MaxUnpacked {
			return fmt.Errorf("bundle unpacks to more than the %d-byte limit: %w", s.d.MaxUnpacked, errdefs.ErrInvalid)
		}
		out, err := os.OpenFile(filepath.Join(dir, "bundle-"+name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("bundle: entry %s: %w: %w", errdefs.Quote(name), err, errdefs.ErrInvalid)
		}
		h256 := sha256.New()
		n, err := io.Copy(io.MultiWriter(out, h256), body)
		out.Close()
		written += n
		if err != nil {
			return fmt.Errorf("bundle: %s: %v (truncated): %w", name, err, errdefs.ErrInvalid)
		}
		got[name] = hex.EncodeToString(h256.Sum(nil))
		return nil
	})
	if err == nil && !haveManifest {
		err = fmt.Errorf("bundle has no manifest.json: %w", errdefs.ErrInvalid)
	}
	return m, got, err
}

// Register adopts an ext4 file the client uploaded as an image: checked,
// and grown to the default disk size. It is the caller's, private unless
// the request shares it.
func (s *Service) Register(ctx context.Context, req api.ImageRegisterRequest, p operation.Progress) (api.Image, error) {
	if s.d.Uploads != nil {
		defer s.d.Uploads.Remove(req.Rootfs)
	}
	rootfs, err := s.checkRegister(ctx, req)
	if err != nil {
		return api.Image{}, err
	}
	kernel := req.Kernel
	if kernel == "" {
		kernel = s.d.DefaultKernel
	}
	source := req.Source
	if source == "" {
		source = "an uploaded file"
	}
	// The upload is in staging, like the image's directory: moved, not
	// copied.
	move := func(_ context.Context, dst string) error { return os.Rename(rootfs, dst) }
	return s.adopt(ctx, req.Name, kernel, api.SourceRegister, source, move, true, req.Shared, p)
}

// Adopt publishes an image whose root disk fill writes, at the path it
// is given in staging; source says where it came from. The disk is
// checked with e2fsck before it is published, and a failure anywhere
// leaves nothing behind. The image is ctx's caller's, private unless ctx
// says otherwise (WithShared).
func (s *Service) Adopt(ctx context.Context, name, kernel, source string, fill func(ctx context.Context, dst string) error, p operation.Progress) (api.Image, error) {
	if err := names.Validate("image", name); err != nil {
		return api.Image{}, err
	}
	return s.adopt(ctx, name, kernel, api.SourcePromote, source, fill, false, sharedFrom(ctx), p)
}

// adopt publishes name from the disk fill writes, checked with e2fsck;
// its digest is of the disk as filled, before grow makes it the default
// disk size.
func (s *Service) adopt(ctx context.Context, name, kernel, kind, source string, fill func(ctx context.Context, dst string) error, grow, shared bool, p operation.Progress) (api.Image, error) {
	unlock, err := s.names.Lock(ctx, name, nil)
	if err != nil {
		return api.Image{}, err
	}
	defer unlock()
	if err := s.claimable(ctx, name); err != nil {
		return api.Image{}, err
	}
	return s.build(ctx, name, kernel, shared, p, func(ctx context.Context, dir string) (built, error) {
		dst := filepath.Join(dir, layout.ImageRootfs)
		if err := fill(ctx, dst); err != nil {
			return built{}, err
		}
		p.Stage("verify", "checking the root file system")
		if err := s.ext4.Check(ctx, dst); err != nil {
			return built{}, fmt.Errorf("%s is not a clean ext4 file system: %w", source, err)
		}
		sum, err := digest.File(dst)
		if err != nil {
			return built{}, err
		}
		if grow {
			if err := s.ext4.Grow(ctx, dst); err != nil {
				return built{}, err
			}
		}
		return built{sourceKind: kind, source: source, digest: sum}, nil
	})
}

// CheckRegister answers quickly whether Register can start; a refused
// request's upload is dropped.
func (s *Service) CheckRegister(ctx context.Context, req api.ImageRegisterRequest) error {
	_, err := s.checkRegister(ctx, req)
	if err != nil && s.d.Uploads != nil {
		s.d.Uploads.Remove(req.Rootfs)
	}
	return err
}

// checkRegister checks a register request and finds its upload: the
// request names an upload by ID, never a path the root daemon would open.
func (s *Service) checkRegister(ctx context.Context, req api.ImageRegisterRequest) (string, error) {
	if err := names.Validate("image", req.Name); err != nil {
		return "", err
	}
	if req.Kernel != "" {
		if err := names.Validate("kernel", req.Kernel); err != nil {
			return "", err
		}
	}
	if err := names.Label("source", req.Source); err != nil {
		return "", err
	}
	if s.d.Uploads == nil {
		return "", fmt.Errorf("register image %s: this daemon takes no uploads: %w", req.Name, errdefs.ErrUnavailable)
	}
	rootfs, err := s.d.Uploads.Path(ctx, req.Rootfs, upload.File)
	if err != nil {
		return "", fmt.Errorf("register image %s: rootfs: %w", req.Name, err)
	}
	if err := s.claimable(ctx, req.Name); err != nil {
		return "", err
	}
	return rootfs, nil
}
