package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/banger-dev/banger/internal/api"
)

// StageSeed sends a work seed (a tar stream the caller read with its own
// rights) and returns the staged seed, for a VM create to claim. disk is
// the work disk's size ("4G"), "" for the daemon's default.
func (c *Client) StageSeed(ctx context.Context, meta api.Work, disk string, body io.Reader) (api.Seed, error) {
	q := url.Values{}
	q.Set("source", meta.Source)
	if meta.Base != "" {
		q.Set("base", meta.Base)
	}
	if meta.Branch != "" {
		q.Set("branch", meta.Branch)
	}
	if disk != "" {
		q.Set("disk", disk)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://banger"+api.Prefix+"/seeds?"+q.Encode(), body)
	if err != nil {
		return api.Seed{}, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return api.Seed{}, ctx.Err()
		}
		// The body's own error (a file the caller cannot read) says more
		// than the transport's.
		var be bodyError
		if errors.As(err, &be) {
			return api.Seed{}, be.err
		}
		return api.Seed{}, c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return api.Seed{}, decodeError(resp)
	}
	var s api.Seed
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("decode seed answer: %w", err)
	}
	return s, nil
}

// bodyError marks an error of a request body's reader, so that it is
// reported as it is rather than as a broken connection.
type bodyError struct{ err error }

func (b bodyError) Error() string { return b.err.Error() }
func (b bodyError) Unwrap() error { return b.err }

// BodyError wraps the error of a reader given as a request body.
func BodyError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return bodyError{err}
}

// ExportWork streams a VM's /work as tar. The stream's reader fails at
// its end if the daemon reported an error after it began.
func (c *Client) ExportWork(ctx context.Context, name string) (io.ReadCloser, error) {
	p, err := vmPath(name, "/work")
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, "GET", p, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return &trailerChecked{resp: resp}, nil
}

type trailerChecked struct{ resp *http.Response }

func (t *trailerChecked) Read(p []byte) (int, error) {
	n, err := t.resp.Body.Read(p)
	if err == io.EOF {
		if msg := t.resp.Trailer.Get("X-Banger-Error"); msg != "" {
			return n, &Error{Status: 500, Code: "internal", Message: msg}
		}
	}
	return n, err
}

func (t *trailerChecked) Close() error { return t.resp.Body.Close() }

// WorkPulled records that a VM's work was brought back as branch.
func (c *Client) WorkPulled(ctx context.Context, name string, req api.WorkPulled) (api.VM, error) {
	var v api.VM
	p, err := vmPath(name, "/work/pulled")
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, "POST", p, req, &v)
}

// AuthSync lends a running VM the credentials in req.
func (c *Client) AuthSync(ctx context.Context, name string, req api.AuthSync) (api.VM, error) {
	var v api.VM
	p, err := vmPath(name, "/authsync")
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, "POST", p, req, &v)
}
