package operation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func drain(t *testing.T, s *Sub) []api.Event {
	t.Helper()
	var all []api.Event
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		evs, ok := s.Next(ctx)
		all = append(all, evs...)
		if !ok {
			if ctx.Err() != nil {
				t.Fatal("operation never finished")
			}
			return all
		}
	}
}

func TestOperationStreamsAndFinishes(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry(ctx)
	op, sub := r.Start(ctx, "pull", "k", func(ctx context.Context, p Progress) (any, error) {
		p.Stage("download", "downloading %s", "k")
		for i := int64(1); i <= 1000; i++ {
			p.Bytes("download", i, 1000)
		}
		p.Stage("publish", "publishing")
		return map[string]string{"name": "k"}, nil
	})
	evs := drain(t, sub)
	if len(evs) < 3 || evs[0].Message != "downloading k" || evs[len(evs)-1].Message != "publishing" {
		t.Fatalf("events = %+v", evs)
	}
	// Byte counts are merged but the last one survives.
	if last := evs[len(evs)-2]; last.Done != 1000 {
		t.Fatalf("last byte count = %+v", last)
	}
	res, err := op.Result()
	if err != nil || string(res) != `{"name":"k"}` {
		t.Fatalf("result = %s, %v", res, err)
	}
	r.Wait()
	if len(r.List(ctx)) != 0 {
		t.Fatal("finished operation still listed")
	}
}

func TestCancel(t *testing.T) {
	ctx := peer.AsUID(context.Background(), 1000)
	r := NewRegistry(context.Background())
	started := make(chan struct{})
	op, sub := r.Start(ctx, "pull", "k", func(ctx context.Context, p Progress) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	<-started
	if ops := r.List(ctx); len(ops) != 1 || ops[0].ID != op.ID() {
		t.Fatalf("list = %+v", ops)
	}
	// Another user neither sees it nor cancels it; root does both.
	other := peer.AsUID(context.Background(), 1001)
	if ops := r.List(other); len(ops) != 0 {
		t.Fatalf("another user lists %+v", ops)
	}
	if err := r.Cancel(other, op.ID()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("another user's cancel: %v", err)
	}
	root := peer.AsUID(context.Background(), 0)
	if ops := r.List(root); len(ops) != 1 || ops[0].Owner != 1000 {
		t.Fatalf("root lists %+v", ops)
	}
	if err := r.Cancel(ctx, op.ID()); err != nil {
		t.Fatal(err)
	}
	drain(t, sub)
	if _, err := op.Result(); !errors.Is(err, errdefs.ErrCanceled) {
		t.Fatalf("err = %v", err)
	}
	if err := r.Cancel(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
}
