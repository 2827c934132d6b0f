package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request) {
	vs, err := s.d.VMs.List(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, vs)
}

func (s *Server) getVM(w http.ResponseWriter, r *http.Request) {
	v, err := s.d.VMs.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) vmEgress(w http.ResponseWriter, r *http.Request) {
	e, err := s.d.VMs.Egress(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// vmActivity answers a VM's activity record; ?since= is an RFC 3339
// time or a duration back from now ("1h").
func (s *Server) vmActivity(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if q := r.URL.Query().Get("since"); q != "" {
		t, err := api.ParseSince(q, time.Now())
		if err != nil {
			writeError(w, fmt.Errorf("since: %w: %w", err, errdefs.ErrInvalid))
			return
		}
		since = t
	}
	rep, err := s.d.VMs.Activity(r.Context(), r.PathValue("name"), since)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) rootChanges(w http.ResponseWriter, r *http.Request) {
	c, err := s.d.VMs.RootChanges(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) recordActivity(w http.ResponseWriter, r *http.Request) {
	var req api.ActivityRequest
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.d.VMs.RecordActivity(r.Context(), r.PathValue("name"), req); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) removeVM(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force")
	if err := s.d.VMs.Remove(r.Context(), r.PathValue("name"), force == "1" || force == "true"); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createVM(w http.ResponseWriter, r *http.Request) {
	var req api.VMCreateRequest
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.d.VMs.CheckCreate(r.Context(), req); err != nil {
		// The seed was sent for this VM: nobody will claim it now.
		if req.Seed != "" && s.d.Seeds != nil {
			s.d.Seeds.Discard(r.Context(), req.Seed)
		}
		writeError(w, err)
		return
	}
	s.stream(w, r, "vm create", req.Name, func(ctx context.Context, p operation.Progress) (any, error) {
		return s.d.VMs.Create(ctx, req, p)
	})
}

// vmAction decodes an optional body into req and streams fn as an
// operation on the named VM.
func vmAction[T, R any](s *Server, w http.ResponseWriter, r *http.Request, kind string, fn func(context.Context, string, T, operation.Progress) (R, error)) {
	checkedVMAction(s, w, r, kind, func(ctx context.Context, name string, _ T) error {
		_, err := s.d.VMs.Get(ctx, name)
		return err
	}, fn)
}

// checkedVMAction is vmAction whose request check refuses a bad request
// before the operation starts.
func checkedVMAction[T, R any](s *Server, w http.ResponseWriter, r *http.Request, kind string, check func(context.Context, string, T) error, fn func(context.Context, string, T, operation.Progress) (R, error)) {
	name := r.PathValue("name")
	if err := names.Validate("vm", name); err != nil {
		writeError(w, err)
		return
	}
	var req T
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := check(r.Context(), name, req); err != nil {
		writeError(w, err)
		return
	}
	s.stream(w, r, kind, name, func(ctx context.Context, p operation.Progress) (any, error) {
		return fn(ctx, name, req, p)
	})
}

func (s *Server) snapshotVM(w http.ResponseWriter, r *http.Request) {
	checkedVMAction(s, w, r, "vm snapshot", s.d.VMs.CheckSnapshot, s.d.VMs.Snapshot)
}

func (s *Server) forkVM(w http.ResponseWriter, r *http.Request) {
	checkedVMAction(s, w, r, "vm fork", s.d.VMs.CheckFork, s.d.VMs.Fork)
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	ss, err := s.d.VMs.Snapshots(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ss)
}

func (s *Server) removeSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.d.VMs.RemoveSnapshot(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) startVM(w http.ResponseWriter, r *http.Request) {
	vmAction(s, w, r, "vm start", s.d.VMs.Start)
}

func (s *Server) stopVM(w http.ResponseWriter, r *http.Request) {
	vmAction(s, w, r, "vm stop", s.d.VMs.Stop)
}

func (s *Server) restartVM(w http.ResponseWriter, r *http.Request) {
	vmAction(s, w, r, "vm restart", s.d.VMs.Restart)
}

// vmLogs streams the console log as plain text; ?follow=1 keeps the
// response open while the VM runs, like tail -f.
func (s *Server) vmLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.d.VMs.Get(r.Context(), name); err != nil {
		writeError(w, err)
		return
	}
	follow := r.URL.Query().Get("follow")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	if err := s.d.VMs.Logs(r.Context(), name, follow == "1" || follow == "true", w, flush); err != nil {
		s.d.Log.Warn("vm logs", "vm", name, "err", err)
	}
}
