package kernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/banger-dev/banger/internal/format/bzimage"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/upload"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// importFiles are the uploads an import names, where the daemon keeps
// them.
type importFiles struct {
	deb, kernel, initrd, modules string
}

// resolve checks an import request and finds its uploads. The request
// names uploads by ID, never a path: a path would have the root daemon
// read any file on the host for whoever may reach its socket.
func (s *Service) resolve(ctx context.Context, req api.KernelImportRequest) (importFiles, error) {
	var f importFiles
	if (req.Deb == "") == (req.Kernel == "") {
		return f, fmt.Errorf("import kernel %s: give either a .deb or a kernel file: %w", req.Name, errdefs.ErrInvalid)
	}
	if req.Deb != "" && (req.Initrd != "" || req.Modules != "") {
		return f, fmt.Errorf("import kernel %s: --initrd and --modules go with --kernel, not --deb: %w", req.Name, errdefs.ErrInvalid)
	}
	if err := names.Label("source", req.Source); err != nil {
		return f, fmt.Errorf("import kernel %s: %w", req.Name, err)
	}
	if s.d.Uploads == nil {
		return f, fmt.Errorf("import kernel %s: this daemon takes no uploads: %w", req.Name, errdefs.ErrUnavailable)
	}
	for _, u := range []struct {
		flag, id, kind string
		dst            *string
	}{{"deb", req.Deb, upload.File, &f.deb}, {"kernel", req.Kernel, upload.File, &f.kernel}, {"initrd", req.Initrd, upload.File, &f.initrd}, {"modules", req.Modules, upload.Tree, &f.modules}} {
		if u.id == "" {
			continue
		}
		p, err := s.d.Uploads.Path(ctx, u.id, u.kind)
		if err != nil {
			return f, fmt.Errorf("import kernel %s: %s: %w", req.Name, u.flag, err)
		}
		*u.dst = p
	}
	return f, nil
}

// dropUploads removes the uploads req named, used or refused.
func (s *Service) dropUploads(req api.KernelImportRequest) {
	if s.d.Uploads == nil {
		return
	}
	for _, id := range []string{req.Deb, req.Kernel, req.Initrd, req.Modules} {
		if id != "" {
			s.d.Uploads.Remove(id)
		}
	}
}

func (s *Service) importFiles(ctx context.Context, req api.KernelImportRequest, f importFiles, dir string, p operation.Progress) (staged, error) {
	source := req.Source
	if source == "" {
		source = "uploaded files"
	}
	if f.deb != "" {
		digest, err := fileSHA256(f.deb)
		if err != nil {
			return staged{}, err
		}
		st, err := s.unpackDebFile(ctx, f.deb, dir, p)
		var meta *metaPackageError
		if errors.As(err, &meta) {
			return staged{}, fmt.Errorf("%s: import the kernel package itself (%s): %w", meta.Error(), meta.dependsOn, errdefs.ErrInvalid)
		}
		if err != nil {
			return staged{}, err
		}
		st.sourceKind, st.source, st.digest = sourceImport, source, digest
		if req.Version != "" {
			st.version = req.Version
		}
		return st, nil
	}
	digest, err := fileSHA256(f.kernel)
	if err != nil {
		return staged{}, err
	}
	tmp := filepath.Join(dir, "import-kernel")
	if err := os.Rename(f.kernel, tmp); err != nil {
		return staged{}, err
	}
	if err := s.placeKernel(tmp, dir, p); err != nil {
		return staged{}, fmt.Errorf("the kernel file: %w", err)
	}
	if f.initrd != "" {
		if err := os.Rename(f.initrd, filepath.Join(dir, layout.KernelInitrd)); err != nil {
			return staged{}, err
		}
	}
	if f.modules != "" {
		src, release, err := modulesRelease(f.modules)
		if err != nil {
			return staged{}, err
		}
		// The upload was unpacked safely (tarx) in staging, like dir.
		if err := os.MkdirAll(filepath.Join(dir, layout.KernelModules), 0o700); err != nil {
			return staged{}, err
		}
		if err := os.Rename(src, filepath.Join(dir, layout.KernelModules, release)); err != nil {
			return staged{}, fmt.Errorf("modules %s: %w", release, err)
		}
	}
	return staged{version: req.Version, sourceKind: sourceImport, source: source, digest: digest}, nil
}

// modulesRelease accepts either /lib/modules/<release> or a directory
// holding exactly one <release>, and returns the release directory.
func modulesRelease(dir string) (string, string, error) {
	if isReleaseDir(dir) {
		return dir, filepath.Base(dir), nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", err
	}
	var found []string
	for _, e := range entries {
		if e.IsDir() && isReleaseDir(filepath.Join(dir, e.Name())) {
			found = append(found, e.Name())
		}
	}
	if len(found) != 1 {
		return "", "", fmt.Errorf("modules %s: want a /lib/modules/<release> directory (with modules.dep or kernel/), found %d releases in it: %w", dir, len(found), errdefs.ErrInvalid)
	}
	return filepath.Join(dir, found[0]), found[0], nil
}

func isReleaseDir(dir string) bool {
	for _, n := range []string{"modules.dep", "kernel", "modules.order"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// inspect checks what a source left in dir and lists it: a vmlinux that is
// an ELF file must be there; modules, when present, are one release.
func inspect(dir string) (api.Kernel, error) {
	var k api.Kernel
	vmlinux := filepath.Join(dir, layout.KernelVMLinux)
	if !bzimage.IsELF(vmlinux) {
		return k, fmt.Errorf("no ELF vmlinux was produced: %w", errdefs.ErrInvalid)
	}
	for _, name := range []string{layout.KernelVMLinux, layout.KernelVMLinuz, layout.KernelInitrd} {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return k, err
		}
		sum, err := fileSHA256(path)
		if err != nil {
			return k, err
		}
		k.Files = append(k.Files, api.KernelFile{Name: name, Size: fi.Size(), SHA256: sum})
	}
	modRoot := filepath.Join(dir, layout.KernelModules)
	releases, _ := os.ReadDir(modRoot)
	switch len(releases) {
	case 0:
		os.Remove(modRoot)
	case 1:
		k.Release = releases[0].Name()
		size, count, err := treeSize(filepath.Join(modRoot, k.Release))
		if err != nil {
			return k, err
		}
		if count == 0 {
			return k, fmt.Errorf("modules directory %s is empty: %w", k.Release, errdefs.ErrInvalid)
		}
		k.Modules = true
		k.Files = append(k.Files, api.KernelFile{Name: layout.KernelModules + "/" + k.Release + "/", Size: size, Count: count})
	default:
		var rs []string
		for _, r := range releases {
			rs = append(rs, r.Name())
		}
		sort.Strings(rs)
		return k, fmt.Errorf("modules for %d kernel releases (%v), want one: %w", len(rs), rs, errdefs.ErrInvalid)
	}
	for _, f := range k.Files {
		k.Size += f.Size
	}
	return k, nil
}

func treeSize(root string) (size int64, count int, err error) {
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
			count++
		}
		return nil
	})
	return size, count, err
}
