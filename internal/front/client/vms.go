package client

import (
	"context"
	"io"
	"net/url"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/wire/api"
)

func vmPath(name, suffix string) (string, error) {
	if err := names.Validate("vm", name); err != nil {
		return "", err
	}
	return "/vms/" + url.PathEscape(name) + suffix, nil
}

// VMs lists VMs.
func (c *Client) VMs(ctx context.Context) ([]api.VM, error) {
	var vs []api.VM
	return vs, c.do(ctx, "GET", "/vms", nil, &vs)
}

// VM returns one VM.
func (c *Client) VM(ctx context.Context, name string) (api.VM, error) {
	var v api.VM
	p, err := vmPath(name, "")
	if err != nil {
		return v, err
	}
	return v, c.do(ctx, "GET", p, nil, &v)
}

// Egress returns what a bridge-mode VM's lookups resolved.
func (c *Client) Egress(ctx context.Context, name string) (api.Egress, error) {
	var e api.Egress
	p, err := vmPath(name, "/egress")
	if err != nil {
		return e, err
	}
	return e, c.do(ctx, "GET", p, nil, &e)
}

// Activity returns a VM's activity record from since on ("" for all; an
// RFC 3339 time or a duration back from now).
func (c *Client) Activity(ctx context.Context, name, since string) (api.ActivityReport, error) {
	var rep api.ActivityReport
	p, err := vmPath(name, "/activity")
	if err != nil {
		return rep, err
	}
	if since != "" {
		p += "?since=" + url.QueryEscape(since)
	}
	return rep, c.do(ctx, "GET", p, nil, &rep)
}

// RootChanges lists how a stopped VM's root disk differs from its image.
func (c *Client) RootChanges(ctx context.Context, name string) (api.RootChanges, error) {
	var rc api.RootChanges
	p, err := vmPath(name, "/changes")
	if err != nil {
		return rc, err
	}
	return rc, c.do(ctx, "GET", p, nil, &rc)
}

// RecordActivity reports what this client did in a VM (commands, files)
// for its record.
func (c *Client) RecordActivity(ctx context.Context, name string, evs ...api.ActivityEvent) error {
	p, err := vmPath(name, "/activity")
	if err != nil {
		return err
	}
	return c.do(ctx, "POST", p, api.ActivityRequest{Events: evs}, nil)
}

// CreateVM creates (and with req.Start, boots) a VM.
func (c *Client) CreateVM(ctx context.Context, req api.VMCreateRequest, onEvent func(api.Event)) (api.VM, error) {
	var v api.VM
	if req.Name != "" {
		if err := names.Validate("vm", req.Name); err != nil {
			return v, err
		}
	}
	return v, c.stream(ctx, "/vms", req, onEvent, &v)
}

// StartVM boots a stopped VM and waits for its agent.
func (c *Client) StartVM(ctx context.Context, name string, req api.VMStartRequest, onEvent func(api.Event)) (api.VM, error) {
	return c.vmAction(ctx, name, "/start", req, onEvent)
}

// StopVM stops a VM.
func (c *Client) StopVM(ctx context.Context, name string, req api.VMStopRequest, onEvent func(api.Event)) (api.VM, error) {
	return c.vmAction(ctx, name, "/stop", req, onEvent)
}

// RestartVM stops and starts a VM.
func (c *Client) RestartVM(ctx context.Context, name string, req api.VMStartRequest, onEvent func(api.Event)) (api.VM, error) {
	return c.vmAction(ctx, name, "/restart", req, onEvent)
}

func (c *Client) vmAction(ctx context.Context, name, suffix string, body any, onEvent func(api.Event)) (api.VM, error) {
	var v api.VM
	p, err := vmPath(name, suffix)
	if err != nil {
		return v, err
	}
	return v, c.stream(ctx, p, body, onEvent, &v)
}

// RemoveVM removes a VM; force kills a running one first.
func (c *Client) RemoveVM(ctx context.Context, name string, force bool) error {
	p, err := vmPath(name, "")
	if err != nil {
		return err
	}
	if force {
		p += "?force=1"
	}
	return c.do(ctx, "DELETE", p, nil, nil)
}

// VMLogs copies a VM's console log to w; with follow, until the VM stops
// or ctx ends.
func (c *Client) VMLogs(ctx context.Context, name string, follow bool, w io.Writer) error {
	p, err := vmPath(name, "/logs")
	if err != nil {
		return err
	}
	if follow {
		p += "?follow=1"
	}
	resp, err := c.send(ctx, "GET", p, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// SnapshotVM saves a running VM whole; it runs on.
func (c *Client) SnapshotVM(ctx context.Context, name string, req api.SnapshotRequest, onEvent func(api.Event)) (api.Snapshot, error) {
	var sn api.Snapshot
	p, err := vmPath(name, "/snapshot")
	if err != nil {
		return sn, err
	}
	return sn, c.stream(ctx, p, req, onEvent, &sn)
}

// ForkVM makes a new VM from a running one, as it is now.
func (c *Client) ForkVM(ctx context.Context, name string, req api.ForkRequest, onEvent func(api.Event)) (api.VM, error) {
	return c.vmAction(ctx, name, "/fork", req, onEvent)
}

// Snapshots lists the snapshots.
func (c *Client) Snapshots(ctx context.Context) ([]api.Snapshot, error) {
	var ss []api.Snapshot
	return ss, c.do(ctx, "GET", "/snapshots", nil, &ss)
}

// RemoveSnapshot drops a snapshot.
func (c *Client) RemoveSnapshot(ctx context.Context, name string) error {
	if err := names.Validate("snapshot", name); err != nil {
		return err
	}
	return c.do(ctx, "DELETE", "/snapshots/"+url.PathEscape(name), nil, nil)
}
