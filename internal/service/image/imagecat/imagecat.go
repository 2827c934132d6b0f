// Package imagecat is the image catalog: the embedded list of images
// banger knows how to fetch or build, merged with extra catalog files.
package imagecat

import (
	"context"
	_ "embed"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/banger-dev/banger/internal/format/catalogfile"
	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

//go:embed catalog.json
var embedded []byte

type file struct {
	Images []api.ImageCatalogEntry `json:"images"`
}

var (
	suite    = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	variants = map[string]bool{"": true, "extract": true, "custom": true, "essential": true, "apt": true, "required": true, "minbase": true, "buildd": true, "important": true, "debootstrap": true, "standard": true}
)

// Parse reads one catalog file. origin names it in errors.
func Parse(origin string, b []byte) ([]api.ImageCatalogEntry, error) {
	var f file
	if err := catalogfile.Decode("image catalog", origin, b, &f); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i := range f.Images {
		e := &f.Images[i]
		if err := validate(*e); err != nil {
			return nil, fmt.Errorf("image catalog %s: entry %d: %w", origin, i+1, err)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("image catalog %s: image %q listed twice: %w", origin, e.Name, errdefs.ErrInvalid)
		}
		seen[e.Name] = true
		e.Catalog, e.Local = origin, false
	}
	return f.Images, nil
}

func validate(e api.ImageCatalogEntry) error {
	if err := names.Validate("image", e.Name); err != nil {
		return err
	}
	if err := names.Validate("kernel", e.Kernel); err != nil {
		return fmt.Errorf("image %q: %w", e.Name, err)
	}
	if len(e.Sources) == 0 {
		return fmt.Errorf("image %q: no sources: %w", e.Name, errdefs.ErrInvalid)
	}
	for j, s := range e.Sources {
		if err := ValidateSource(s); err != nil {
			return fmt.Errorf("image %q: source %d: %w", e.Name, j+1, err)
		}
	}
	return nil
}

// ValidateSource checks one source for its kind's required fields.
func ValidateSource(s api.ImageSource) error {
	switch s.Kind {
	case api.SourceOCI:
		if _, err := name.ParseReference(s.Ref); err != nil {
			return fmt.Errorf("oci source: ref %q: %v: %w", s.Ref, err, errdefs.ErrInvalid)
		}
	case api.SourceBundle:
		if !config.IsURL(s.URL) {
			return fmt.Errorf("bundle source: url %q must be https:// (or http:// to a loopback address): %w", s.URL, errdefs.ErrInvalid)
		}
		if !catalogfile.SHA256Hex.MatchString(s.SHA256) {
			return fmt.Errorf("bundle source %s: sha256 must be 64 lower-case hex digits: %w", s.URL, errdefs.ErrInvalid)
		}
	case api.SourceDebootstrap:
		if !suite.MatchString(s.Suite) {
			return fmt.Errorf("debootstrap source: suite %q is not a suite name: %w", s.Suite, errdefs.ErrInvalid)
		}
		if !variants[s.Variant] {
			return fmt.Errorf("debootstrap source: unknown variant %q: %w", s.Variant, errdefs.ErrInvalid)
		}
		for _, p := range s.Packages {
			if !catalogfile.DebPackage.MatchString(p) {
				return fmt.Errorf("debootstrap source: package %q is not a valid package name: %w", p, errdefs.ErrInvalid)
			}
		}
		if len(s.Services) > 16 {
			return fmt.Errorf("debootstrap source: %d services, at most 16: %w", len(s.Services), errdefs.ErrInvalid)
		}
		for _, sv := range s.Services {
			if _, _, err := guestproto.ParseService(sv); err != nil {
				return fmt.Errorf("debootstrap source: %v: %w", err, errdefs.ErrInvalid)
			}
		}
	default:
		return fmt.Errorf("unknown source kind %q (want oci, bundle or debootstrap): %w", s.Kind, errdefs.ErrInvalid)
	}
	return nil
}

// Embedded returns the compiled-in catalog.
func Embedded() []api.ImageCatalogEntry {
	es, err := Parse("embedded", embedded)
	if err != nil {
		panic(err) // checked by a unit test: a build bug
	}
	return es
}

// Load returns the embedded catalog merged with each extra file in order.
func Load(ctx context.Context, extras []string, fetch catalogfile.Fetcher) ([]api.ImageCatalogEntry, error) {
	return catalogfile.Load(ctx, "image catalog", Embedded(), extras, fetch, Parse,
		func(e api.ImageCatalogEntry) string { return e.Name })
}

// Describe renders a source for progress lines.
func Describe(s api.ImageSource) string {
	switch s.Kind {
	case api.SourceOCI:
		return "oci " + s.Ref
	case api.SourceBundle:
		return "bundle " + s.URL
	case api.SourceDebootstrap:
		return "debootstrap " + s.Suite + " (" + strings.Join(append([]string{s.Variant}, s.Packages...), " ") + ")"
	}
	return s.Kind
}

// Find returns the entry called name.
func Find(entries []api.ImageCatalogEntry, name string) (api.ImageCatalogEntry, bool) {
	for _, e := range entries {
		if e.Name == name {
			return e, true
		}
	}
	return api.ImageCatalogEntry{}, false
}
