// Package fetch holds what the image and kernel services share in
// fetching an artifact: trying a catalog entry's sources in turn until
// one works, and reading a downloaded archive entry by entry.
package fetch

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Target names what sources are tried for, in the lines users see and in
// the log.
type Target struct {
	Kind string // "image", "kernel"
	Name string
	// Log, when set, records each source's failure: users see only a
	// one-line message, and the full error helps whoever keeps the host.
	Log *slog.Logger
}

// FirstOf tries sources in order and returns what the first that works
// gives. A failure is reported on p and the next source tried; when none
// works, the error names each source with why it failed. A canceled ctx
// ends the loop with ctx's error: a failure the cancel caused says nothing
// about the source, and the user asked for no more work.
func FirstOf[S, R any](ctx context.Context, t Target, sources []S, describe func(S) string, try func(context.Context, S) (R, error), p operation.Progress) (R, error) {
	var zero R
	if len(sources) == 0 {
		// Catalogs refuse such entries; this keeps the error readable.
		return zero, fmt.Errorf("pull %s %s: the catalog entry has no sources: %w", t.Kind, t.Name, errdefs.ErrInvalid)
	}
	var errs []error
	for i, src := range sources {
		p.Stage("source", "%s %s: trying source %d of %d: %s", t.Kind, t.Name, i+1, len(sources), describe(src))
		r, err := try(ctx, src)
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		if t.Log != nil {
			t.Log.Info(t.Kind+" source failed", t.Kind, t.Name, "source", describe(src), "err", err)
		}
		p.Stage("source", "source %d failed: %s", i+1, errdefs.Message(err))
		errs = append(errs, fmt.Errorf("source %d (%s): %w", i+1, describe(src), err))
	}
	if len(errs) == 1 {
		return zero, fmt.Errorf("pull %s %s: %w", t.Kind, t.Name, errs[0])
	}
	return zero, fmt.Errorf("pull %s %s: no source worked: %w", t.Kind, t.Name, errors.Join(errs...))
}

// EachEntry calls each with every entry of tr in order, and the entry's
// contents, until the archive ends (nil) or each fails (its error, as
// is). An archive that cannot be read is ctx's error when ctx is done,
// since canceling is what broke the stream, and otherwise what bad makes
// of the read error: only the caller knows what the archive is to users.
func EachEntry(ctx context.Context, tr *tar.Reader, bad func(error) error, each func(*tar.Header, io.Reader) error) error {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return bad(err)
		}
		if err := each(h, tr); err != nil {
			return err
		}
	}
}
