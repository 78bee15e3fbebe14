// Package registrytest serves OCI images over real HTTP for tests: an
// in-process registry (go-containerregistry's registry package behind
// httptest) that keeps blobs per repository as real registries do, answers
// cross-repository mounts, records every request it receives and can
// require a user and password; and test images built from files on this
// machine (see BusyboxImage).
//
// A Registry is safe for concurrent use; it closes when its test ends.
package registrytest

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Options configures New. The zero value is an open registry that mounts.
type Options struct {
	// User and Password, when User is set, are required on every request
	// (HTTP Basic, announced by a 401 challenge).
	User, Password string
	// RefuseMounts makes the registry answer a mount request by opening
	// an upload instead (202), as ECR does without blob mounting or for
	// layers of a pull-through cache repository.
	RefuseMounts bool
}

// Request is one request the registry received.
type Request struct {
	Method, Path, Query string
	Status              int
}

// Registry is a running test registry.
type Registry struct {
	// Server is the HTTP server; Host its "127.0.0.1:port".
	Server *httptest.Server
	Host   string

	opts  Options
	inner http.Handler

	mu       sync.Mutex
	blobs    map[string]map[string]bool // repository → digest → present
	requests []Request
	uploaded []string // digests whose upload completed, in order
	mounted  []string // digests mounted
}

// New starts a registry for the test; it stops when the test ends.
func New(t testing.TB, opts Options) *Registry {
	t.Helper()
	r := &Registry{opts: opts, blobs: map[string]map[string]bool{},
		inner: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))}
	r.Server = httptest.NewServer(r)
	r.Host = strings.TrimPrefix(r.Server.URL, "http://")
	t.Cleanup(r.Server.Close)
	return r
}

// Repo returns the repository repo on this registry.
func (r *Registry) Repo(repo string) name.Repository {
	n, err := name.NewRepository(r.Host + "/" + repo)
	if err != nil {
		panic(fmt.Sprintf("registrytest: repository %q: %v", repo, err))
	}
	return n
}

// Requests returns the requests received so far.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// Uploaded returns the digests of the blobs whose upload completed (mounts
// not included), in order.
func (r *Registry) Uploaded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.uploaded...)
}

// Mounted returns the digests of the blobs mounted across repositories.
func (r *Registry) Mounted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.mounted...)
}

// ResetLog forgets the requests, uploads and mounts seen so far (not the
// blobs).
func (r *Registry) ResetLog() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests, r.uploaded, r.mounted = nil, nil, nil
}

// HasBlob reports whether repo holds the blob digest.
func (r *Registry) HasBlob(repo, digest string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobs[repo][digest]
}

// Push writes img to ref ("repo:tag" on this registry) and returns its
// digest.
func (r *Registry) Push(t testing.TB, ref string, img v1.Image) v1.Hash {
	t.Helper()
	tag, err := name.NewTag(r.Host + "/" + ref)
	if err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	if err := remote.Write(tag, img, r.authOption()...); err != nil {
		t.Fatalf("registrytest: push %s: %v", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PushIndex writes idx to ref ("repo:tag" on this registry) and returns its
// digest.
func (r *Registry) PushIndex(t testing.TB, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	tag, err := name.NewTag(r.Host + "/" + ref)
	if err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	if err := remote.WriteIndex(tag, idx, r.authOption()...); err != nil {
		t.Fatalf("registrytest: push index %s: %v", tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (r *Registry) authOption() []remote.Option {
	if r.opts.User == "" {
		return nil
	}
	return []remote.Option{remote.WithAuth(basic{r.opts.User, r.opts.Password})}
}

// ServeHTTP serves the registry API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		r.mu.Lock()
		r.requests = append(r.requests, Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Status: rec.status})
		r.mu.Unlock()
	}()
	if r.opts.User != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.opts.User || p != r.opts.Password {
			rec.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			writeError(rec, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
	}
	repo, kind, rest := split(req.URL.Path)
	q := req.URL.Query()
	switch {
	case kind == "blobs" && (req.Method == http.MethodGet || req.Method == http.MethodHead):
		if !r.HasBlob(repo, rest) {
			writeError(rec, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to repository")
			return
		}
	case kind == "uploads" && req.Method == http.MethodPost && q.Get("mount") != "":
		d, from := q.Get("mount"), q.Get("from")
		if !r.opts.RefuseMounts && r.HasBlob(from, d) {
			r.mu.Lock()
			r.mark(repo, d)
			r.mounted = append(r.mounted, d)
			r.mu.Unlock()
			rec.Header().Set("Location", "/v2/"+repo+"/blobs/"+d)
			rec.Header().Set("Docker-Content-Digest", d)
			rec.WriteHeader(http.StatusCreated)
			return
		}
	}
	r.inner.ServeHTTP(rec, req)
	if kind == "uploads" && (req.Method == http.MethodPut || req.Method == http.MethodPost) &&
		rec.status == http.StatusCreated && q.Get("digest") != "" {
		r.mu.Lock()
		r.mark(repo, q.Get("digest"))
		r.uploaded = append(r.uploaded, q.Get("digest"))
		r.mu.Unlock()
	}
}

func (r *Registry) mark(repo, digest string) {
	if r.blobs[repo] == nil {
		r.blobs[repo] = map[string]bool{}
	}
	r.blobs[repo][digest] = true
}

// split parses /v2/<repo>/blobs/uploads/<id>, /v2/<repo>/blobs/<digest>
// and /v2/<repo>/manifests/<ref>.
func split(p string) (repo, kind, rest string) {
	p = strings.TrimPrefix(p, "/v2/")
	if i := strings.LastIndex(p, "/blobs/uploads"); i >= 0 {
		return p[:i], "uploads", strings.TrimPrefix(p[i+len("/blobs/uploads"):], "/")
	}
	if i := strings.LastIndex(p, "/blobs/"); i >= 0 {
		return p[:i], "blobs", p[i+len("/blobs/"):]
	}
	if i := strings.LastIndex(p, "/manifests/"); i >= 0 {
		return p[:i], "manifests", p[i+len("/manifests/"):]
	}
	return "", "", p
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// basic is an authn.Authenticator for the registry's own pushes.
type basic struct{ user, pass string }
