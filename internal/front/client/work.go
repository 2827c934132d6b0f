package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/banger-dev/banger/internal/wire/api"
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
	if meta.SeedCommit != "" {
		q.Set("seed_commit", meta.SeedCommit)
	}
	if disk != "" {
		q.Set("disk", disk)
	}
	var s api.Seed
	return s, c.postBody(ctx, "/seeds?"+q.Encode(), "application/x-tar", body, &s)
}

// Upload sends a file (kind "file") or a directory tree as tar (kind
// "tree") for a later request to name by the ID it returns.
func (c *Client) Upload(ctx context.Context, kind string, body io.Reader) (api.Upload, error) {
	var u api.Upload
	return u, c.postBody(ctx, "/uploads?kind="+url.QueryEscape(kind), "application/octet-stream", body, &u)
}

// postBody POSTs a streamed body and decodes the JSON answer into out.
func (c *Client) postBody(ctx context.Context, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://banger"+api.Prefix+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The body's own error (a file the caller cannot read) says more
		// than the transport's.
		var be bodyError
		if errors.As(err, &be) {
			return be.err
		}
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode the daemon's answer: %w", err)
	}
	return nil
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

// GiveSecrets gives a running VM secrets: placeholders in the guest, the
// values added by the daemon's proxy.
func (c *Client) GiveSecrets(ctx context.Context, name string, req api.SecretsRequest) (api.VM, error) {
	var v api.VM
	p, err := vmPath(name, "/secrets")
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, "POST", p, req, &v)
}
