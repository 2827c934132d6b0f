package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dustin/go-humanize"

	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/front/seed"
	"github.com/banger-dev/banger/internal/wire/api"
)

// SeedDir is the directory a create seeds when the caller names none:
// cwd when it is in a git checkout, unless workdir (the user config's
// setting) is "off"; "" for none.
func SeedDir(ctx context.Context, workdir, cwd string) string {
	// Only a checkout is seeded unasked: a VM started from $HOME must
	// not try to carry it along.
	if workdir == "off" || !seed.InCheckout(ctx, cwd) {
		return ""
	}
	return cwd
}

// Seed reads dir (its whole git checkout, when it is in one) with the
// caller's rights and sends it to the daemon as a work seed, for a create
// to claim by the ID it returns. disk is the work disk's size ("4G"), ""
// for the daemon's default. onEvent, when not nil, takes the progress.
func (c *Client) Seed(ctx context.Context, dir, disk string, onEvent func(api.Event)) (string, error) {
	if onEvent == nil {
		onEvent = func(api.Event) {}
	}
	plan, err := seed.Find(ctx, dir)
	if err != nil {
		return "", err
	}
	defer plan.Close()
	st, err := c.daemon.Status(ctx)
	if err != nil {
		return "", err
	}
	if err := plan.CheckSize(st.MaxSeedBytes); err != nil {
		return "", err
	}
	// Refuse before sending: a file the caller cannot read would
	// otherwise end the stream half-way.
	if err := plan.CheckReadable(); err != nil {
		return "", err
	}
	onEvent(api.Event{Stage: "seed", Message: fmt.Sprintf("seeding %s %s into /work: %d entries, %s",
		describe(plan), plan.Root, plan.Count(), humanize.IBytes(uint64(max(plan.Bytes, 0))))})
	id, err := c.sendSeed(ctx, plan, disk, onEvent)
	if err != nil {
		return "", fmt.Errorf("seed %s: %w", plan.Root, err)
	}
	return id, nil
}

// sendSeed streams plan to the daemon, counting its bytes as progress.
func (c *Client) sendSeed(ctx context.Context, plan *seed.Plan, disk string, onEvent func(api.Event)) (string, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(client.BodyError(plan.Write(ctx, pw))) }()
	// A request that ends before the stream does must not leave the
	// writer blocked.
	defer pr.CloseWithError(errors.New("seed upload ended"))
	var s api.Seed
	err := client.SendCounted(onEvent, "seed", plan.Bytes, pr, func(body io.Reader) error {
		var err error
		s, err = c.daemon.StageSeed(ctx, api.Work{Source: plan.Root, Base: plan.Base, Branch: plan.Branch, SeedCommit: plan.SeedCommit}, disk, body)
		return err
	})
	return s.ID, err
}

// describe names what a plan seeds, for the line that announces it:
// "directory", or "checkout at BASE (BRANCH)" as far as they are known.
func describe(plan *seed.Plan) string {
	if !plan.Git {
		return "directory"
	}
	what := "checkout"
	if plan.Base != "" {
		what += fmt.Sprintf(" at %.12s", plan.Base)
	}
	if plan.Branch != "" {
		what += " (" + plan.Branch + ")"
	}
	return what
}
