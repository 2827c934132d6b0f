// Package client is a typed client of the daemon's API over its unix
// socket. The CLI uses it; so can any Go program.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Client talks to one daemon.
type Client struct {
	socket string
	hc     *http.Client
}

// New returns a client of the daemon listening on socket.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 16,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Error is an error the daemon answered with.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap lets errors.Is match errdefs sentinels across the socket.
func (e *Error) Unwrap() error { return errdefs.FromCode(e.Code) }

// ErrDaemonUnreachable wraps every failure to reach the daemon.
var ErrDaemonUnreachable = errors.New("daemon unreachable")

func (c *Client) connError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("cannot reach the banger daemon at %s: it is not running. Start it with `sudo banger daemon` (or pass --socket / set BANGER_SOCKET if it listens elsewhere): %w", c.socket, ErrDaemonUnreachable)
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("permission denied on the banger socket %s: add yourself to its group (`sudo usermod -aG banger $USER`, then log in again) or use sudo: %w", c.socket, ErrDaemonUnreachable)
	}
	return fmt.Errorf("talk to the banger daemon at %s: %w: %w", c.socket, err, ErrDaemonUnreachable)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://banger"+api.Prefix+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.connError(err)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var e api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		return &Error{Status: resp.StatusCode, Code: "internal", Message: fmt.Sprintf("daemon answered %s: %s", resp.Status, bytes.TrimSpace(b))}
	}
	return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
}

// Version returns the daemon's build.
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	var v api.VersionInfo
	return v, c.do(ctx, "GET", "/version", nil, &v)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var s api.Status
	return s, c.do(ctx, "GET", "/status", nil, &s)
}

// ProbeAccel has the daemon prove its accelerator afresh.
func (c *Client) ProbeAccel(ctx context.Context) (api.Accel, error) {
	var a api.Accel
	return a, c.do(ctx, "POST", "/accel/probe", nil, &a)
}

// Operations lists running operations.
func (c *Client) Operations(ctx context.Context) ([]api.Operation, error) {
	var ops []api.Operation
	return ops, c.do(ctx, "GET", "/operations", nil, &ops)
}

// CancelOperation cancels a running operation.
func (c *Client) CancelOperation(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/operations/"+url.PathEscape(id), nil, nil)
}

// Kernels lists published kernels.
func (c *Client) Kernels(ctx context.Context) ([]api.Kernel, error) {
	var ks []api.Kernel
	return ks, c.do(ctx, "GET", "/kernels", nil, &ks)
}

// Templates lists the templates VMs resume from.
func (c *Client) Templates(ctx context.Context) ([]api.Template, error) {
	var ts []api.Template
	return ts, c.do(ctx, "GET", "/templates", nil, &ts)
}

// RemoveTemplate drops a template.
func (c *Client) RemoveTemplate(ctx context.Context, id string) error {
	if err := names.Validate("template", id); err != nil {
		return err
	}
	return c.do(ctx, "DELETE", "/templates/"+url.PathEscape(id), nil, nil)
}

// kernelPath builds the path of a kernel, refusing names the daemon would
// refuse anyway (an empty one would even name another endpoint).
func kernelPath(name, suffix string) (string, error) {
	if err := names.Validate("kernel", name); err != nil {
		return "", err
	}
	return "/kernels/" + url.PathEscape(name) + suffix, nil
}

// Kernel returns one kernel.
func (c *Client) Kernel(ctx context.Context, name string) (api.Kernel, error) {
	var k api.Kernel
	p, err := kernelPath(name, "")
	if err != nil {
		return k, err
	}
	return k, c.do(ctx, "GET", p, nil, &k)
}

// KernelCatalog returns the merged kernel catalog.
func (c *Client) KernelCatalog(ctx context.Context) ([]api.KernelCatalogEntry, error) {
	var es []api.KernelCatalogEntry
	return es, c.do(ctx, "GET", "/catalog/kernels", nil, &es)
}

// RemoveKernel removes a kernel.
func (c *Client) RemoveKernel(ctx context.Context, name string) error {
	p, err := kernelPath(name, "")
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", p, nil, nil)
}

// ShareKernel lets every user of the daemon see and boot a kernel.
func (c *Client) ShareKernel(ctx context.Context, name string) (api.Kernel, error) {
	var k api.Kernel
	p, err := kernelPath(name, "/share")
	if err != nil {
		return k, err
	}
	return k, c.do(ctx, "POST", p, nil, &k)
}

// PullKernel pulls a catalog kernel, passing progress events to onEvent.
func (c *Client) PullKernel(ctx context.Context, name string, onEvent func(api.Event)) (api.Kernel, error) {
	var k api.Kernel
	p, err := kernelPath(name, "/pull")
	if err != nil {
		return k, err
	}
	return k, c.stream(ctx, p, nil, onEvent, &k)
}

// ImportKernel imports a kernel from files on the daemon's host.
func (c *Client) ImportKernel(ctx context.Context, req api.KernelImportRequest, onEvent func(api.Event)) (api.Kernel, error) {
	var k api.Kernel
	p, err := kernelPath(req.Name, "/import")
	if err != nil {
		return k, err
	}
	return k, c.stream(ctx, p, req, onEvent, &k)
}

// stream runs a long operation. When ctx is canceled (the user pressed
// Ctrl-C), the operation is canceled in the daemon and stream waits for
// the daemon to confirm it was undone.
func (c *Client) stream(ctx context.Context, path string, body any, onEvent func(api.Event), out any) error {
	// The request itself must outlive ctx, to read the final event after
	// asking for cancellation.
	resp, err := c.send(context.WithoutCancel(ctx), "POST", path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	events := make(chan api.Event)
	readErr := make(chan error, 1)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var ev api.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				readErr <- fmt.Errorf("bad event from daemon: %w", err)
				return
			}
			events <- ev
		}
		readErr <- sc.Err()
	}()
	opID := ""
	canceled := false
	done := ctx.Done()
	var deadline <-chan time.Time
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if err := <-readErr; err != nil {
					return fmt.Errorf("operation stream broke: %w", err)
				}
				return fmt.Errorf("the daemon closed the stream before the operation finished (did it stop?): %w", ErrDaemonUnreachable)
			}
			switch ev.Type {
			case api.EventOperation:
				opID = ev.Operation
			case api.EventResult:
				if out != nil {
					return json.Unmarshal(ev.Result, out)
				}
				return nil
			case api.EventError:
				if ev.Error == nil {
					return errors.New("operation failed without an error message")
				}
				return &Error{Code: ev.Error.Code, Message: ev.Error.Message}
			}
			if onEvent != nil {
				onEvent(ev)
			}
		case <-done:
			done = nil
			if opID != "" && !canceled {
				canceled = true
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.CancelOperation(cctx, opID)
				cancel()
			}
			deadline = time.After(60 * time.Second)
		case <-deadline:
			return fmt.Errorf("canceled; the daemon did not confirm within a minute (operation %s): %w", opID, ctx.Err())
		}
	}
}

func imagePath(name, suffix string) (string, error) {
	if err := names.Validate("image", name); err != nil {
		return "", err
	}
	return "/images/" + url.PathEscape(name) + suffix, nil
}

// Images lists published images.
func (c *Client) Images(ctx context.Context) ([]api.Image, error) {
	var ims []api.Image
	return ims, c.do(ctx, "GET", "/images", nil, &ims)
}

// Image returns one image.
func (c *Client) Image(ctx context.Context, name string) (api.Image, error) {
	var im api.Image
	p, err := imagePath(name, "")
	if err != nil {
		return im, err
	}
	return im, c.do(ctx, "GET", p, nil, &im)
}

// ImageCatalog returns the merged image catalog.
func (c *Client) ImageCatalog(ctx context.Context) ([]api.ImageCatalogEntry, error) {
	var es []api.ImageCatalogEntry
	return es, c.do(ctx, "GET", "/catalog/images", nil, &es)
}

// RemoveImage removes an image.
func (c *Client) RemoveImage(ctx context.Context, name string) error {
	p, err := imagePath(name, "")
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", p, nil, nil)
}

// ShareImage lets every user of the daemon see and boot an image.
func (c *Client) ShareImage(ctx context.Context, name string) (api.Image, error) {
	var im api.Image
	p, err := imagePath(name, "/share")
	if err != nil {
		return im, err
	}
	return im, c.do(ctx, "POST", p, nil, &im)
}

// PullImage pulls a catalog image or an OCI reference.
func (c *Client) PullImage(ctx context.Context, req api.ImagePullRequest, onEvent func(api.Event)) (api.Image, error) {
	var im api.Image
	if req.Name == "" {
		return im, fmt.Errorf("image name or reference is empty: %w", errdefs.ErrInvalid)
	}
	return im, c.stream(ctx, "/images/pull", req, onEvent, &im)
}

// RegisterImage adopts an ext4 file on the daemon's host.
// PromoteImage makes image req.Name of stopped VM req.VM's root disk.
func (c *Client) PromoteImage(ctx context.Context, req api.ImagePromoteRequest, onEvent func(api.Event)) (api.Image, error) {
	var im api.Image
	p, err := imagePath(req.Name, "/promote")
	if err != nil {
		return im, err
	}
	return im, c.stream(ctx, p, req, onEvent, &im)
}

func (c *Client) RegisterImage(ctx context.Context, req api.ImageRegisterRequest, onEvent func(api.Event)) (api.Image, error) {
	var im api.Image
	p, err := imagePath(req.Name, "/register")
	if err != nil {
		return im, err
	}
	return im, c.stream(ctx, p, req, onEvent, &im)
}
