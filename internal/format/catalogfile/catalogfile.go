// Package catalogfile loads catalogs (of kernels, of images): an embedded
// document merged with extra files or https URLs named in the config.
package catalogfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Field rules shared by the catalogs.
var (
	// SHA256Hex is a sha256 digest as catalogs write it.
	SHA256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// DebPackage is a Debian package name (policy 5.6.1).
	DebPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
)

// MaxFileSize bounds a catalog file.
const MaxFileSize = 4 << 20

// Fetcher reads a remote catalog document.
type Fetcher func(ctx context.Context, url string, limit int64) ([]byte, error)

// Decode strictly decodes one JSON document into v; kind and origin name
// it in errors ("kernel catalog /etc/banger/k.json").
func Decode(kind, origin string, b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n")) + 1
			return fmt.Errorf("%s %s: not valid JSON (line %d): %v: %w", kind, origin, line, err, errdefs.ErrInvalid)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s %s: not valid JSON (the document ends early): %w", kind, origin, errdefs.ErrInvalid)
		}
		return fmt.Errorf("%s %s: %v: %w", kind, origin, err, errdefs.ErrInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%s %s: trailing data after the JSON document: %w", kind, origin, errdefs.ErrInvalid)
	}
	return nil
}

// Read returns the bytes of a catalog file or URL.
func Read(ctx context.Context, src string, fetch Fetcher) ([]byte, error) {
	if u, err := url.Parse(src); err == nil && (u.Scheme == "https" || u.Scheme == "http") {
		if fetch == nil {
			return nil, fmt.Errorf("no way to fetch %s: %w", src, errdefs.ErrUnavailable)
		}
		return fetch(ctx, src, MaxFileSize)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes: %w", MaxFileSize, errdefs.ErrInvalid)
	}
	return b, nil
}

// Load parses the embedded catalog, then each extra source in order,
// merging by name: a later entry replaces an earlier one. Any extra that
// cannot be read or parsed fails the load, so a broken configuration is
// noticed rather than silently ignored.
func Load[T any](ctx context.Context, kind string, embedded []T, extras []string, fetch Fetcher, parse func(origin string, b []byte) ([]T, error), name func(T) string) ([]T, error) {
	out := append([]T(nil), embedded...)
	idx := map[string]int{}
	for i, e := range out {
		idx[name(e)] = i
	}
	for _, src := range extras {
		b, err := Read(ctx, src, fetch)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, src, err)
		}
		es, err := parse(src, b)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if i, ok := idx[name(e)]; ok {
				out[i] = e
				continue
			}
			idx[name(e)] = len(out)
			out = append(out, e)
		}
	}
	return out, nil
}
