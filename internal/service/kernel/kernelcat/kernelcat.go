// Package kernelcat is the kernel catalog: the embedded list of kernels
// banger knows how to fetch, merged with any extra catalog files the
// configuration names.
package kernelcat

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/banger-dev/banger/internal/format/catalogfile"
	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

//go:embed catalog.json
var embedded []byte

// EmbeddedOrigin names the compiled-in catalog.
const EmbeddedOrigin = "embedded"

type file struct {
	Kernels []api.KernelCatalogEntry `json:"kernels"`
}

// Parse reads one catalog file. origin names it in errors.
func Parse(origin string, b []byte) ([]api.KernelCatalogEntry, error) {
	var f file
	if err := catalogfile.Decode("kernel catalog", origin, b, &f); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i := range f.Kernels {
		e := &f.Kernels[i]
		if err := validate(*e); err != nil {
			return nil, fmt.Errorf("kernel catalog %s: entry %d: %w", origin, i+1, err)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("kernel catalog %s: kernel %q listed twice: %w", origin, e.Name, errdefs.ErrInvalid)
		}
		seen[e.Name] = true
		e.Catalog = origin
		e.Local = false
	}
	return f.Kernels, nil
}

func validate(e api.KernelCatalogEntry) error {
	if err := names.Validate("kernel", e.Name); err != nil {
		return err
	}
	if e.Version == "" {
		return fmt.Errorf("kernel %q: no version: %w", e.Name, errdefs.ErrInvalid)
	}
	if e.Arch != "x86_64" {
		return fmt.Errorf("kernel %q: arch %q: only x86_64 is supported: %w", e.Name, e.Arch, errdefs.ErrInvalid)
	}
	if len(e.Sources) == 0 {
		return fmt.Errorf("kernel %q: no sources: %w", e.Name, errdefs.ErrInvalid)
	}
	for j, s := range e.Sources {
		if err := ValidateSource(s); err != nil {
			return fmt.Errorf("kernel %q: source %d: %w", e.Name, j+1, err)
		}
	}
	return nil
}

// ValidateSource checks one source for its kind's required fields.
func ValidateSource(s api.KernelSource) error {
	switch s.Kind {
	case api.SourceURL, api.SourceDeb:
		if !config.IsURL(s.URL) {
			return fmt.Errorf("%s source: url %q must be https:// (or http:// to a loopback address): %w", s.Kind, s.URL, errdefs.ErrInvalid)
		}
		if !catalogfile.SHA256Hex.MatchString(s.SHA256) {
			return fmt.Errorf("%s source %s: sha256 must be 64 lower-case hex digits: %w", s.Kind, s.URL, errdefs.ErrInvalid)
		}
	case api.SourceApt:
		if !catalogfile.DebPackage.MatchString(s.Package) {
			return fmt.Errorf("apt source: package %q is not a valid package name: %w", s.Package, errdefs.ErrInvalid)
		}
	case api.SourceOCI:
		if s.Ref == "" || strings.ContainsAny(s.Ref, " \t\n") {
			return fmt.Errorf("oci source: ref %q is not an image reference: %w", s.Ref, errdefs.ErrInvalid)
		}
	default:
		return fmt.Errorf("unknown source kind %q (want url, deb, apt or oci): %w", s.Kind, errdefs.ErrInvalid)
	}
	return nil
}

// Embedded returns the compiled-in catalog.
func Embedded() []api.KernelCatalogEntry {
	es, err := Parse(EmbeddedOrigin, embedded)
	if err != nil {
		// The embedded file is checked by a unit test; this is a build bug.
		panic(err)
	}
	return es
}

// Load returns the embedded catalog merged with each extra file in order.
func Load(ctx context.Context, extras []string, fetch catalogfile.Fetcher) ([]api.KernelCatalogEntry, error) {
	return catalogfile.Load(ctx, "kernel catalog", Embedded(), extras, fetch, Parse,
		func(e api.KernelCatalogEntry) string { return e.Name })
}

// Find returns the entry called name.
func Find(entries []api.KernelCatalogEntry, name string) (api.KernelCatalogEntry, bool) {
	for _, e := range entries {
		if e.Name == name {
			return e, true
		}
	}
	return api.KernelCatalogEntry{}, false
}
