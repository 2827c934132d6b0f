package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// audit is what one request's audit line says beyond its method, path
// and status: the operation it started and how that ended.
type audit struct {
	mu      sync.Mutex
	op      string // guarded by mu
	outcome string // guarded by mu: done, failed, canceled, or running (the client left first)
}

type auditKey struct{}

func auditOf(ctx context.Context) *audit {
	a, _ := ctx.Value(auditKey{}).(*audit)
	return a
}

// ended records how a request's operation ended, as far as the request
// saw it.
func (a *audit) ended(op, outcome string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.op, a.outcome = op, outcome
	a.mu.Unlock()
}

func (a *audit) outcomeIs(o string) bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.outcome == o
}

// outcomeOf names how an operation ended.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return "done"
	case errdefs.Code(err) == "canceled":
		return "canceled"
	default:
		return "failed"
	}
}

// object names what a request is about, from the route it matched
// ("vm/web", "snapshot/s1", "operation/ab12"): the line is read by people
// looking for who touched what.
func object(r *http.Request) string {
	kind, _, _ := strings.Cut(strings.TrimPrefix(r.Pattern[strings.Index(r.Pattern, " ")+1:], api.Prefix+"/"), "/")
	kind = strings.TrimSuffix(kind, "s")
	for _, v := range []string{"name", "id"} {
		if n := r.PathValue(v); n != "" {
			return kind + "/" + n
		}
	}
	return kind
}

// audited serves every request through next and leaves one line per
// request, reads included: who asked (the kernel's word on the socket's
// peer, not the client's), what about, how it ended, and for a streamed
// operation its real outcome.
func (s *Server) audited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		a := &audit{}
		r = r.WithContext(context.WithValue(r.Context(), auditKey{}, a))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			args := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(began).Round(time.Millisecond)}
			if r.Pattern != "" && strings.Contains(r.Pattern, " ") {
				args = append(args, "object", object(r))
			}
			a.mu.Lock()
			if a.op != "" {
				args = append(args, "operation", a.op, "outcome", a.outcome)
			}
			a.mu.Unlock()
			args = append(args, caller(r.Context())...)
			s.d.Log.Info("audit", args...)
		}()
		next.ServeHTTP(sw, r)
	})
}

// caller is the audit fields naming ctx's caller.
func caller(ctx context.Context) []any {
	if c, ok := peer.Of(ctx); ok {
		return []any{"uid", c.Uid, "gid", c.Gid, "pid", c.Pid}
	}
	return nil
}

// auditEnd leaves the line of an operation whose client left before it
// ended: the request's own line said "running".
func (s *Server) auditEnd(ctx context.Context, op, kind, target string, err error) {
	args := []any{"operation", op, "kind", kind, "object", target, "outcome", outcomeOf(err)}
	if err != nil {
		args = append(args, "err", errdefs.Message(err))
	}
	s.d.Log.Info("audit", append(args, caller(ctx)...)...)
}
