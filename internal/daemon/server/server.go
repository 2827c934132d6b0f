// Package server is the daemon's HTTP/JSON API over its unix socket. It
// decodes requests, calls the services, and maps their errors to HTTP
// status codes and stable machine codes: the only place that does.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Kernels is what the API needs of the kernel service.
type Kernels interface {
	List(ctx context.Context) ([]api.Kernel, error)
	Get(ctx context.Context, name string) (api.Kernel, error)
	Catalog(ctx context.Context) ([]api.KernelCatalogEntry, error)
	CheckPull(ctx context.Context, name string) error
	Pull(ctx context.Context, name string, p operation.Progress) (api.Kernel, error)
	CheckImport(ctx context.Context, req api.KernelImportRequest) error
	Import(ctx context.Context, req api.KernelImportRequest, p operation.Progress) (api.Kernel, error)
	Remove(ctx context.Context, name string) error
	Share(ctx context.Context, name string) (api.Kernel, error)
}

// Images is what the API needs of the image service.
type Images interface {
	List(ctx context.Context) ([]api.Image, error)
	Get(ctx context.Context, name string) (api.Image, error)
	Catalog(ctx context.Context) ([]api.ImageCatalogEntry, error)
	CheckPull(ctx context.Context, req api.ImagePullRequest) error
	Pull(ctx context.Context, req api.ImagePullRequest, p operation.Progress) (api.Image, error)
	CheckRegister(ctx context.Context, req api.ImageRegisterRequest) error
	Register(ctx context.Context, req api.ImageRegisterRequest, p operation.Progress) (api.Image, error)
	Remove(ctx context.Context, name string) error
	Share(ctx context.Context, name string) (api.Image, error)
}

// VMs is what the API needs of the VM service.
type VMs interface {
	List(ctx context.Context) ([]api.VM, error)
	Get(ctx context.Context, name string) (api.VM, error)
	CheckPromote(ctx context.Context, req api.ImagePromoteRequest) error
	Promote(ctx context.Context, req api.ImagePromoteRequest, p operation.Progress) (api.Image, error)
	CheckCreate(ctx context.Context, req api.VMCreateRequest) error
	Create(ctx context.Context, req api.VMCreateRequest, p operation.Progress) (api.VM, error)
	Start(ctx context.Context, name string, req api.VMStartRequest, p operation.Progress) (api.VM, error)
	Stop(ctx context.Context, name string, req api.VMStopRequest, p operation.Progress) (api.VM, error)
	Restart(ctx context.Context, name string, req api.VMStartRequest, p operation.Progress) (api.VM, error)
	Remove(ctx context.Context, name string, force bool) error
	Logs(ctx context.Context, name string, follow bool, w io.Writer, flush func()) error
	CheckWork(ctx context.Context, name string) error
	ExportWork(ctx context.Context, name string, w io.Writer) error
	WorkPulled(ctx context.Context, name string, req api.WorkPulled) (api.VM, error)
	AuthSync(ctx context.Context, name string, req api.AuthSync) (api.VM, error)
	Secrets(ctx context.Context, name string, req api.SecretsRequest) (api.VM, error)
	Templates(ctx context.Context) ([]api.Template, error)
	RemoveTemplate(ctx context.Context, id string) error
	CheckSnapshot(ctx context.Context, name string, req api.SnapshotRequest) error
	Snapshot(ctx context.Context, name string, req api.SnapshotRequest, p operation.Progress) (api.Snapshot, error)
	CheckFork(ctx context.Context, name string, req api.ForkRequest) error
	Fork(ctx context.Context, name string, req api.ForkRequest, p operation.Progress) (api.VM, error)
	Snapshots(ctx context.Context) ([]api.Snapshot, error)
	RemoveSnapshot(ctx context.Context, name string) error
	Egress(ctx context.Context, name string) (api.Egress, error)
	Activity(ctx context.Context, name string, since time.Time) (api.ActivityReport, error)
	RecordActivity(ctx context.Context, name string, req api.ActivityRequest) error
	RootChanges(ctx context.Context, name string) (api.RootChanges, error)
}

// Seeds is what the API needs of the workspace service.
type Seeds interface {
	Stage(ctx context.Context, r io.Reader, meta api.Work, diskBytes int64) (api.Seed, error)
	Discard(ctx context.Context, id string)
}

// Uploads is what the API needs of the upload store.
type Uploads interface {
	Put(ctx context.Context, r io.Reader, kind string) (api.Upload, error)
}

// Deps are the server's dependencies.
type Deps struct {
	Kernels    Kernels
	Images     Images
	VMs        VMs
	Seeds      Seeds
	Uploads    Uploads
	Operations *operation.Registry
	Status     func(ctx context.Context) (api.Status, error)
	// Reprobe proves the accelerator afresh (banger doctor).
	Reprobe func(ctx context.Context) api.Accel
	Version api.VersionInfo
	Log     *slog.Logger
}

// Server serves the API.
type Server struct {
	d Deps
}

// New returns a Server.
func New(d Deps) *Server {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Server{d: d}
}

// Route is one endpoint. Routes are data so that the OpenAPI document can
// be checked against exactly what is served.
type Route struct {
	Method, Path string
	Handler      http.HandlerFunc
}

// Routes lists every endpoint.
func (s *Server) Routes() []Route {
	p := api.Prefix
	return []Route{
		{"GET", p + "/version", s.version},
		{"GET", p + "/status", s.status},
		{"POST", p + "/accel/probe", s.probeAccel},
		{"GET", p + "/operations", s.listOperations},
		{"DELETE", p + "/operations/{id}", s.cancelOperation},
		{"GET", p + "/catalog/kernels", s.kernelCatalog},
		{"GET", p + "/kernels", s.listKernels},
		{"GET", p + "/kernels/{name}", s.getKernel},
		{"DELETE", p + "/kernels/{name}", s.removeKernel},
		{"POST", p + "/kernels/{name}/pull", s.pullKernel},
		{"POST", p + "/kernels/{name}/import", s.importKernel},
		{"POST", p + "/kernels/{name}/share", s.shareKernel},
		{"GET", p + "/catalog/images", s.imageCatalog},
		{"GET", p + "/images", s.listImages},
		{"GET", p + "/images/{name}", s.getImage},
		{"DELETE", p + "/images/{name}", s.removeImage},
		{"POST", p + "/images/pull", s.pullImage},
		{"POST", p + "/images/{name}/register", s.registerImage},
		{"POST", p + "/images/{name}/promote", s.promoteImage},
		{"POST", p + "/images/{name}/share", s.shareImage},
		{"GET", p + "/vms", s.listVMs},
		{"POST", p + "/vms", s.createVM},
		{"GET", p + "/vms/{name}", s.getVM},
		{"DELETE", p + "/vms/{name}", s.removeVM},
		{"POST", p + "/vms/{name}/start", s.startVM},
		{"POST", p + "/vms/{name}/stop", s.stopVM},
		{"POST", p + "/vms/{name}/restart", s.restartVM},
		{"GET", p + "/vms/{name}/logs", s.vmLogs},
		{"GET", p + "/vms/{name}/work", s.exportWork},
		{"POST", p + "/vms/{name}/work/pulled", s.workPulled},
		{"POST", p + "/vms/{name}/authsync", s.authSync},
		{"POST", p + "/vms/{name}/secrets", s.secrets},
		{"POST", p + "/vms/{name}/snapshot", s.snapshotVM},
		{"POST", p + "/vms/{name}/fork", s.forkVM},
		{"GET", p + "/vms/{name}/egress", s.vmEgress},
		{"GET", p + "/vms/{name}/activity", s.vmActivity},
		{"POST", p + "/vms/{name}/activity", s.recordActivity},
		{"GET", p + "/vms/{name}/changes", s.rootChanges},
		{"GET", p + "/snapshots", s.listSnapshots},
		{"DELETE", p + "/snapshots/{name}", s.removeSnapshot},
		{"GET", p + "/templates", s.listTemplates},
		{"DELETE", p + "/templates/{name}", s.removeTemplate},
		{"POST", p + "/seeds", s.stageSeed},
		{"POST", p + "/uploads", s.putUpload},
	}
}

// Handler returns the HTTP handler for all routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.Routes() {
		mux.HandleFunc(r.Method+" "+r.Path, r.Handler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("no such endpoint %s %s (the API is under %s/, see docs/openapi.json): %w", r.Method, r.URL.Path, api.Prefix, errdefs.ErrNotFound))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			// A bug in one handler must not take the daemon down.
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.d.Log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeError(w, fmt.Errorf("internal error: %v", v))
			}
		}()
		s.audited(mux).ServeHTTP(w, r)
	})
}

// Status codes for error kinds, chosen once here.
func statusOf(err error) int {
	switch errdefs.Code(err) {
	case "not_found":
		return http.StatusNotFound
	case "conflict":
		return http.StatusConflict
	case "invalid":
		return http.StatusBadRequest
	case "checksum_mismatch":
		return http.StatusUnprocessableEntity
	case "unavailable":
		return http.StatusBadGateway
	case "canceled":
		return http.StatusConflict
	case "permission_denied":
		return http.StatusForbidden
	case "quota_exceeded":
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

func apiError(err error) *api.Error {
	return &api.Error{Code: errdefs.Code(err), Message: errdefs.Message(err)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), apiError(err))
}

// decode reads a small JSON body strictly.
func decode(r *http.Request, v any) error { return decodeLimit(r, v, 1<<20) }

// decodeLimit decodes a JSON body of at most limit bytes.
func decodeLimit(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("request body: %v: %w", err, errdefs.ErrInvalid)
	}
	return nil
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.d.Version)
}

// probeAccel runs the accelerator probe again and answers with the new
// choice, which VMs started from now on get.
func (s *Server) probeAccel(w http.ResponseWriter, r *http.Request) {
	if s.d.Reprobe == nil {
		writeError(w, fmt.Errorf("this daemon has no accelerator probe: %w", errdefs.ErrUnavailable))
		return
	}
	writeJSON(w, http.StatusOK, s.d.Reprobe(r.Context()))
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.d.Status(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) listOperations(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.d.Operations.List(r.Context()))
}

func (s *Server) cancelOperation(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Operations.Cancel(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) kernelCatalog(w http.ResponseWriter, r *http.Request) {
	es, err := s.d.Kernels.Catalog(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, es)
}

func (s *Server) listKernels(w http.ResponseWriter, r *http.Request) {
	ks, err := s.d.Kernels.List(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ks)
}

func (s *Server) getKernel(w http.ResponseWriter, r *http.Request) {
	k, err := s.d.Kernels.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) {
	ts, err := s.d.VMs.Templates(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) removeTemplate(w http.ResponseWriter, r *http.Request) {
	if err := s.d.VMs.RemoveTemplate(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) removeKernel(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Kernels.Remove(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) shareKernel(w http.ResponseWriter, r *http.Request) {
	k, err := s.d.Kernels.Share(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) pullKernel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.d.Kernels.CheckPull(r.Context(), name); err != nil {
		writeError(w, err)
		return
	}
	s.stream(w, r, "kernel pull", name, func(ctx context.Context, p operation.Progress) (any, error) {
		return s.d.Kernels.Pull(ctx, name, p)
	})
}

// named serves a long operation on the object the path names: the body
// decodes into a request whose name, if it gives one, must be the path's;
// check refuses a bad request before the operation starts, and run is
// the operation, streamed.
func named[T any, R any](s *Server, w http.ResponseWriter, r *http.Request, kind, what string, name func(*T) *string,
	check func(context.Context, T) error, run func(context.Context, T, operation.Progress) (R, error)) {
	var req T
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	n := name(&req)
	if *n != "" && *n != r.PathValue("name") {
		writeError(w, fmt.Errorf("body names %s %q, path names %q: %w", what, *n, r.PathValue("name"), errdefs.ErrInvalid))
		return
	}
	*n = r.PathValue("name")
	if err := check(r.Context(), req); err != nil {
		writeError(w, err)
		return
	}
	s.stream(w, r, kind, *n, func(ctx context.Context, p operation.Progress) (any, error) {
		return run(ctx, req, p)
	})
}

func (s *Server) importKernel(w http.ResponseWriter, r *http.Request) {
	named(s, w, r, "kernel import", "kernel", func(q *api.KernelImportRequest) *string { return &q.Name }, s.d.Kernels.CheckImport, s.d.Kernels.Import)
}

// stream runs fn as an operation and writes its events as newline-delimited
// JSON, ending with a result or an error event. A client that goes away
// does not stop the operation: it completes (or is canceled explicitly
// through DELETE /v1/operations/{id}).
func (s *Server) stream(w http.ResponseWriter, r *http.Request, kind, target string, fn func(context.Context, operation.Progress) (any, error)) {
	op, sub := s.d.Operations.Start(r.Context(), kind, target, fn)
	defer sub.Close()
	// Until it ends in the client's sight, the request's audit line says
	// it runs, and its end gets a line of its own.
	a := auditOf(r.Context())
	a.ended(op.ID(), "running")
	left := make(chan struct{})
	defer close(left)
	go func() {
		<-left
		<-op.Done()
		if a.outcomeIs("running") {
			_, err := op.Result()
			s.auditEnd(r.Context(), op.ID(), kind, target, err)
		}
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Banger-Operation", op.ID())
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(ev api.Event) bool {
		if err := enc.Encode(ev); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if !send(api.Event{Type: api.EventOperation, Operation: op.ID(), Message: kind + " " + target}) {
		return
	}
	for {
		evs, more := sub.Next(r.Context())
		for _, ev := range evs {
			if !send(ev) {
				s.d.Log.Info("client went away; operation continues", "operation", op.ID(), "kind", kind, "target", target)
				return
			}
		}
		if !more {
			break
		}
	}
	select {
	case <-op.Done():
	case <-r.Context().Done():
		s.d.Log.Info("client went away; operation continues", "operation", op.ID(), "kind", kind, "target", target)
		return
	}
	res, err := op.Result()
	a.ended(op.ID(), outcomeOf(err))
	if err != nil {
		send(api.Event{Type: api.EventError, Error: apiError(err)})
		return
	}
	send(api.Event{Type: api.EventResult, Result: res})
}

func (s *Server) imageCatalog(w http.ResponseWriter, r *http.Request) {
	es, err := s.d.Images.Catalog(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, es)
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	ims, err := s.d.Images.List(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ims)
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	im, err := s.d.Images.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, im)
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Images.Remove(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) shareImage(w http.ResponseWriter, r *http.Request) {
	im, err := s.d.Images.Share(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, im)
}

func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) {
	var req api.ImagePullRequest
	if err := decode(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.d.Images.CheckPull(r.Context(), req); err != nil {
		writeError(w, err)
		return
	}
	s.stream(w, r, "image pull", req.Name, func(ctx context.Context, p operation.Progress) (any, error) {
		return s.d.Images.Pull(ctx, req, p)
	})
}

func (s *Server) promoteImage(w http.ResponseWriter, r *http.Request) {
	named(s, w, r, "image promote", "image", func(q *api.ImagePromoteRequest) *string { return &q.Name }, s.d.VMs.CheckPromote, s.d.VMs.Promote)
}

func (s *Server) registerImage(w http.ResponseWriter, r *http.Request) {
	named(s, w, r, "image register", "image", func(q *api.ImageRegisterRequest) *string { return &q.Name }, s.d.Images.CheckRegister, s.d.Images.Register)
}
