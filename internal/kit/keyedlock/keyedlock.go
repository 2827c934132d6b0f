// Package keyedlock provides one mutex per key (a kernel or image name),
// taken with a context so that a waiting caller can give up.
package keyedlock

import (
	"context"
	"os"
	"sync"
)

// Locks is a set of mutexes keyed by string. The zero value is ready.
type Locks struct {
	mu sync.Mutex
	m  map[string]*entry // guarded by mu
}

type entry struct {
	ch   chan struct{} // holds one token while the key is locked
	refs int           // guarded by Locks.mu
}

// Lock takes the mutex for key, waiting until it is free or ctx is done.
// TryLock-free callers that wait can report it with the busy callback,
// called once if the key is already held.
func (l *Locks) Lock(ctx context.Context, key string, busy func()) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*entry{}
	}
	e := l.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
	default:
		if busy != nil {
			busy()
		}
		select {
		case e.ch <- struct{}{}:
		case <-ctx.Done():
			l.release(key, e)
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.ch
			l.release(key, e)
		})
	}, nil
}

func (l *Locks) release(key string, e *entry) {
	l.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
}

// Once makes the file at path with build, unless it exists: under the
// lock of path, so that concurrent callers build it once. It says whether
// this call built it.
func (l *Locks) Once(ctx context.Context, path string, build func() error) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	unlock, err := l.Lock(ctx, path, func() {})
	if err != nil {
		return false, err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	return true, build()
}
