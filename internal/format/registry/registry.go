// Package registry is banger's OCI registry client: go-containerregistry
// with docker-config credentials, configured mirrors tried before the
// origin registry, and linux/amd64 chosen from multi-arch indexes.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Platform is what banger boots.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// Client fetches images.
type Client struct {
	// Mirrors maps a registry host (as users write it: "docker.io") to
	// mirror endpoints ("https://mirror.example", "http://127.0.0.1:5000").
	Mirrors  map[string][]string
	Keychain authn.Keychain
	// Insecure lists registry hosts (host or host:port) that may be
	// reached over plain http besides loopback ones.
	Insecure  []string
	Transport http.RoundTripper
}

// httpGuard refuses plain http except to loopback hosts and to the
// registries the config marks insecure. The registry client would
// otherwise fall back to http for private-range addresses on its own.
type httpGuard struct {
	next    http.RoundTripper
	allowed map[string]bool
}

func (g httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !config.IsLoopbackHost(req.URL.Hostname()) && !g.allowed[req.URL.Host] && !g.allowed[req.URL.Hostname()] {
		return nil, fmt.Errorf("plain http to %s refused: only loopback registries, or those listed in insecure_registries, may be reached without TLS: %w", req.URL.Host, errdefs.ErrUnavailable)
	}
	return g.next.RoundTrip(req)
}

// Resolved is an image and where it came from.
type Resolved struct {
	Image  v1.Image
	Digest string // sha256:... of the manifest
	From   string // the reference actually fetched (a mirror or the origin)
}

// Image resolves ref, trying each mirror of its registry before the
// registry itself. report, when set, is told about each attempt.
func (c *Client) Image(ctx context.Context, ref string, report func(string)) (Resolved, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return Resolved{}, fmt.Errorf("image reference %q: %w: %w", ref, err, errdefs.ErrInvalid)
	}
	var errs []error
	for _, cand := range c.candidates(r) {
		if report != nil {
			report(cand.String())
		}
		img, err := c.fetch(ctx, cand)
		if err == nil {
			d, err := img.Digest()
			if err != nil {
				return Resolved{}, fmt.Errorf("image %s: %w", cand, err)
			}
			return Resolved{Image: img, Digest: d.String(), From: cand.String()}, nil
		}
		if ctx.Err() != nil {
			return Resolved{}, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", cand, classify(err)))
	}
	if len(errs) == 1 {
		return Resolved{}, errors.Unwrap(errs[0])
	}
	return Resolved{}, fmt.Errorf("pull %s: every mirror and the registry failed: %w", ref, errors.Join(errs...))
}

func (c *Client) fetch(ctx context.Context, r name.Reference) (v1.Image, error) {
	kc := c.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	next := c.Transport
	if next == nil {
		next = remote.DefaultTransport
	}
	allowed := map[string]bool{}
	for _, h := range c.Insecure {
		allowed[h] = true
	}
	opts := []remote.Option{
		remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithPlatform(Platform),
		remote.WithTransport(httpGuard{next: next, allowed: allowed}),
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		for _, d := range m.Manifests {
			if d.Platform != nil && d.Platform.OS == Platform.OS && d.Platform.Architecture == Platform.Architecture {
				return idx.Image(d.Digest)
			}
		}
		return nil, fmt.Errorf("no linux/amd64 image in the index: %w", errdefs.ErrNotFound)
	}
	return desc.Image()
}

// candidates lists mirrors first, then the origin.
func (c *Client) candidates(r name.Reference) []name.Reference {
	for _, h := range c.Insecure {
		if r.Context().RegistryStr() == h {
			if nr, err := name.ParseReference(r.String(), name.Insecure); err == nil {
				r = nr
			}
		}
	}
	var out []name.Reference
	host := r.Context().RegistryStr()
	for _, key := range aliases(host) {
		for _, m := range c.Mirrors[key] {
			mr, err := rebase(r, m)
			if err == nil {
				out = append(out, mr)
			}
		}
	}
	return append(out, r)
}

// aliases gives the spellings users use for a registry host in config.
func aliases(host string) []string {
	if host == name.DefaultRegistry || host == "docker.io" || host == "registry-1.docker.io" {
		return []string{"docker.io", "index.docker.io", "registry-1.docker.io"}
	}
	return []string{host}
}

// rebase moves r to the mirror endpoint, keeping repository and tag or
// digest. Plain http is allowed only for loopback mirrors.
func rebase(r name.Reference, endpoint string) (name.Reference, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mirror %q: not a URL", endpoint)
	}
	var opts []name.Option
	if u.Scheme == "http" {
		// The transport's guard decides whether this host may be reached
		// without TLS.
		opts = append(opts, name.Insecure)
	}
	repo := u.Host + "/" + strings.Trim(strings.TrimPrefix(u.Path, "/v2"), "/")
	repo = strings.TrimSuffix(repo, "/") + "/" + r.Context().RepositoryStr()
	switch t := r.(type) {
	case name.Tag:
		return name.NewTag(repo+":"+t.TagStr(), opts...)
	case name.Digest:
		return name.NewDigest(repo+"@"+t.DigestStr(), opts...)
	}
	return nil, fmt.Errorf("unknown reference type %T", r)
}

// classify maps registry failures to banger's error kinds.
func classify(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("image not found in the registry (check its name and tag): %w: %w", err, errdefs.ErrNotFound)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w (log in with `docker login` or add credentials to ~/.docker/config.json of the daemon's user): %w", err, errdefs.ErrUnavailable)
		}
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
}
