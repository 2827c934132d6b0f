package keyedlock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMutualExclusionPerKey(t *testing.T) {
	var l Locks
	var inside, max int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := l.Lock(context.Background(), "k", nil)
			if err != nil {
				t.Error(err)
				return
			}
			n := atomic.AddInt32(&inside, 1)
			for {
				m := atomic.LoadInt32(&max)
				if n <= m || atomic.CompareAndSwapInt32(&max, m, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			atomic.AddInt32(&inside, -1)
			unlock()
		}()
	}
	wg.Wait()
	if max != 1 {
		t.Fatalf("%d holders at once", max)
	}
	if len(l.m) != 0 {
		t.Fatalf("%d entries leaked", len(l.m))
	}
}

func TestOtherKeysDoNotWaitAndCtxCancels(t *testing.T) {
	var l Locks
	unlock, _ := l.Lock(context.Background(), "a", nil)
	defer unlock()
	u2, err := l.Lock(context.Background(), "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	u2()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	busy := false
	if _, err := l.Lock(ctx, "a", func() { busy = true }); err == nil || !busy {
		t.Fatalf("lock of held key: err=%v busy=%v", err, busy)
	}
}
