// Package download fetches URLs with a size bound, a checksum and byte
// progress.
package download

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Progress is told bytes done of total (total is 0 when unknown).
type Progress func(done, total int64)

// Options bound and observe one download.
type Options struct {
	Limit    int64
	Progress Progress
	// SHA256, when set, is the hex digest the content must have.
	SHA256 string
}

// Result says what was downloaded.
type Result struct {
	Size   int64
	SHA256 string
}

// Client fetches URLs. The zero value uses http.DefaultClient's transport.
type Client struct {
	HTTP *http.Client
	// Limit bounds every FetchFile download; 0 means no bound.
	Limit int64
}

// Fetch copies the content at url to w.
func (c Client) Fetch(ctx context.Context, url string, w io.Writer, opt Options) (Result, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{}, fmt.Errorf("download %s: %w: %w", url, err, errdefs.ErrInvalid)
	}
	req.Header.Set("User-Agent", "banger")
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, fmt.Errorf("download %s: %w: %w", url, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		kind := errdefs.ErrUnavailable
		if resp.StatusCode == http.StatusNotFound {
			kind = errdefs.ErrNotFound
		}
		return Result{}, fmt.Errorf("download %s: server answered %s: %w", url, resp.Status, kind)
	}
	total := resp.ContentLength
	if total < 0 {
		total = 0
	}
	if opt.Limit > 0 && total > opt.Limit {
		return Result{}, fmt.Errorf("download %s: %d bytes is over the %d-byte limit (max_download_bytes): %w", url, total, opt.Limit, errdefs.ErrInvalid)
	}
	h := sha256.New()
	pw := &progressWriter{w: io.MultiWriter(w, h), total: total, fn: opt.Progress}
	body := io.Reader(resp.Body)
	if opt.Limit > 0 {
		body = io.LimitReader(resp.Body, opt.Limit+1)
	}
	n, err := io.Copy(pw, body)
	pw.flush()
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		// A body cut short by the server surfaces here as an unexpected EOF.
		return Result{}, fmt.Errorf("download %s: interrupted after %d bytes: %w: %w", url, n, err, errdefs.ErrUnavailable)
	}
	if opt.Limit > 0 && n > opt.Limit {
		return Result{}, fmt.Errorf("download %s: more than the %d-byte limit (max_download_bytes): %w", url, opt.Limit, errdefs.ErrInvalid)
	}
	if resp.ContentLength > 0 && n != resp.ContentLength {
		return Result{}, fmt.Errorf("download %s: truncated: got %d of %d bytes: %w", url, n, resp.ContentLength, errdefs.ErrUnavailable)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if opt.SHA256 != "" && !strings.EqualFold(sum, opt.SHA256) {
		return Result{}, fmt.Errorf("download %s: sha256 is %s, the catalog says %s: the file is corrupt or was replaced: %w", url, sum, opt.SHA256, errdefs.ErrChecksum)
	}
	return Result{Size: n, SHA256: sum}, nil
}

// Bytes fetches a small document into memory.
func (c Client) Bytes(ctx context.Context, url string, limit int64) ([]byte, error) {
	var buf strings.Builder
	_, err := c.Fetch(ctx, url, &buf, Options{Limit: limit})
	if err != nil {
		return nil, err
	}
	return []byte(buf.String()), nil
}

type progressWriter struct {
	w     io.Writer
	done  int64
	total int64
	fn    Progress
	last  time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	// Progress is throttled so a fast local download does not flood the
	// event stream.
	if p.fn != nil && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.fn(p.done, p.total)
	}
	return n, err
}

func (p *progressWriter) flush() {
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

// IsRetryable reports whether another source may succeed where this one
// failed: everything but cancellation.
func IsRetryable(err error) bool {
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// FetchFile downloads url into the new file dest, reporting bytes under
// the "download" stage, and returns "sha256:<hex>" of the content.
func (c Client) FetchFile(ctx context.Context, url, dest, sha string, p operation.Progress) (string, error) {
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	res, err := c.Fetch(ctx, url, f, Options{Limit: c.Limit, SHA256: sha, Progress: func(done, total int64) { p.Bytes("download", done, total) }})
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("download %s: %w", url, cerr)
	}
	if err != nil {
		os.Remove(dest)
		return "", err
	}
	return "sha256:" + res.SHA256, nil
}
