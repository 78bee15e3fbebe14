package jobimage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultMaxImageSize is Lambda's limit on a container image, 10 GB, taken
// as 10 GiB: the check is on the sum of the manifest's (compressed) layer
// sizes, a lower bound of the unpacked size Lambda counts, so an image under
// it may still be refused when the function is created.
const DefaultMaxImageSize int64 = 10 << 30

// userAgent is sent to every registry.
const userAgent = "gitlab-serverless-runner"

// retryBackoff bounds go-containerregistry's retries of temporary failures
// so an unreachable registry fails within seconds.
var retryBackoff = remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}

// Resolver resolves job image references to image manifests. Configure it
// before first use; it is then safe for concurrent use.
type Resolver struct {
	// PullThrough maps an upstream registry host, as go-containerregistry
	// names it ("index.docker.io" for Docker Hub, "registry.gitlab.com"), to
	// the repository prefix of its ECR pull-through cache,
	// "<account>.dkr.ecr.<region>.amazonaws.com/<prefix>". Images on those
	// registries are read through the cache; see the package comment.
	PullThrough map[string]string
	// CacheAuth authenticates to the pull-through cache's registry
	// (imagefn.ECRAuth); nil means anonymous.
	CacheAuth authn.Authenticator
	// AllowPrivateRegistries lets jobs name registries on loopback,
	// private and link-local addresses. Only tests and local mode set it.
	AllowPrivateRegistries bool
	// MaxImageSize is the largest sum of layer sizes accepted
	// (DefaultMaxImageSize when zero).
	MaxImageSize int64

	once sync.Once
	rt   http.RoundTripper
}

// Resolved is one image manifest, for one architecture, of a job's image.
type Resolved struct {
	// Ref is the reference as the job wrote it.
	Ref string
	// Source is where the image is read from, by the digest of the image
	// manifest: the pull-through cache or Ref's own repository.
	Source name.Digest
	// Digest is the digest of the image manifest for the architecture.
	Digest v1.Hash
	// Index is the digest of the multi-platform index Ref named; zero
	// when Ref named a single image manifest.
	Index v1.Hash
	// Arch is the architecture asked for; Platform is the manifest's.
	Arch     Arch
	Platform v1.Platform
	// MediaType is the image manifest's media type (Docker schema 2 or
	// OCI).
	MediaType types.MediaType
	// Size is the sum of the compressed layer sizes; Layers their number.
	Size   int64
	Layers int
	// Config is the image's configuration (entrypoint, env, user…).
	Config *v1.ConfigFile
	// Image reads the image from Source with the credentials that
	// resolved it. Its layers are fetched only when read.
	Image v1.Image
}

// transport returns the resolver's HTTP transport: the pull-through caches'
// registries are trusted; every other registry must be on a public address
// unless AllowPrivateRegistries.
func (r *Resolver) transport() http.RoundTripper {
	r.once.Do(func() {
		var trusted []string
		for _, prefix := range r.PullThrough {
			if repo, err := name.NewRepository(prefix); err == nil {
				trusted = append(trusted, repo.RegistryStr())
			}
		}
		r.rt = newTransport(trusted, r.AllowPrivateRegistries)
	})
	return r.rt
}

// Source returns where an image reference is read from: the reference
// itself, or its pull-through cache's repository with the same tag or
// digest. It makes no network call.
func (r *Resolver) Source(ref string) (name.Reference, error) {
	up, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	prefix, ok := r.PullThrough[up.Context().RegistryStr()]
	if !ok {
		return up, nil
	}
	repo, err := name.NewRepository(strings.TrimSuffix(prefix, "/") + "/" + up.Context().RepositoryStr())
	if err != nil {
		return nil, fmt.Errorf("jobimage: pull-through prefix %q: %w", prefix, err)
	}
	if d, ok := up.(name.Digest); ok {
		return repo.Digest(d.DigestStr()), nil
	}
	return repo.Tag(up.Identifier()), nil
}

func parseRef(ref string) (name.Reference, error) {
	s := strings.TrimSpace(ref)
	up, err := name.ParseReference(s)
	if err != nil || s == "" {
		return nil, &Error{Ref: ref, Kind: ErrBadReference, Err: err,
			Detail: "not a valid image reference (want name[:tag] or name@sha256:digest, e.g. golang:1.23)"}
	}
	return up, nil
}

func (r *Resolver) options(ctx context.Context, auth authn.Authenticator) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx), remote.WithTransport(r.transport()), remote.WithAuth(auth),
		remote.WithRetryBackoff(retryBackoff), remote.WithUserAgent(userAgent),
	}
}

// Resolve resolves ref to the image manifest for arch. creds are the job's
// registry credentials (nil: anonymous). The error is an *Error for every
// failure the job's image causes (see the package comment), or ctx's error.
//
// It reads the manifest (and index), and the image configuration; no layer
// is downloaded.
func (r *Resolver) Resolve(ctx context.Context, ref string, arch Arch, creds *DockerAuth) (*Resolved, error) {
	if !arch.valid() {
		return nil, fmt.Errorf("jobimage: resolve %s: unknown architecture %q", ref, arch)
	}
	up, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	host := up.Context().RegistryStr()
	jobAuth, err := creds.authenticator(ref, host)
	if err != nil {
		return nil, err
	}
	// src is where the manifest is read: upstream, or the pull-through
	// cache once the upstream digest is known. fail classifies an error of
	// src's registry.
	var src name.Reference = up
	fail := func(err error) error { return r.classify(ctx, ref, src.Context().RegistryStr(), creds, err) }
	srcOpts := r.options(ctx, jobAuth)
	if _, cached := r.PullThrough[host]; cached {
		// The job's own right to the image, and what the tag means now.
		desc, err := remote.Head(up, srcOpts...)
		if err != nil {
			return nil, fail(err)
		}
		cache, err := r.Source(ref)
		if err != nil {
			return nil, err
		}
		src = cache.Context().Digest(desc.Digest.String())
		auth := r.CacheAuth
		if auth == nil {
			auth = authn.Anonymous
		}
		srcOpts = r.options(ctx, auth)
	}

	d, err := remote.Get(src, srcOpts...)
	if err != nil {
		return nil, fail(err)
	}
	want := arch.Platform()
	res := &Resolved{Ref: ref, Arch: arch}
	var img v1.Image
	switch {
	case d.MediaType.IsIndex():
		res.Index = d.Digest
		idx, err := d.ImageIndex()
		if err != nil {
			return nil, fail(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fail(err)
		}
		chosen, offered := pickPlatform(im.Manifests, want)
		if chosen == nil {
			return nil, &Error{Ref: ref, Kind: ErrNoPlatform, Platforms: offered, Detail: fmt.Sprintf(
				"no variant for %s (Lambda architecture %s); the image offers %s: choose another LAMBDA_ARCH or image",
				platformString(want), arch, listOrNone(offered))}
		}
		res.Platform = *chosen.Platform
		img, err = remote.Image(src.Context().Digest(chosen.Digest.String()), srcOpts...)
		if err != nil {
			return nil, fail(err)
		}
	case d.MediaType.IsImage():
		img, err = d.Image()
		if err != nil {
			return nil, fail(err)
		}
	case d.MediaType.IsSchema1():
		return nil, &Error{Ref: ref, Kind: ErrUnsupported,
			Detail: "the registry serves it as a Docker schema 1 manifest, which Lambda cannot run: push it again with a current Docker or buildah"}
	default:
		return nil, &Error{Ref: ref, Kind: ErrUnsupported,
			Detail: fmt.Sprintf("the manifest is of type %q, not a container image", d.MediaType)}
	}

	if res.Digest, err = img.Digest(); err != nil {
		return nil, fail(err)
	}
	if res.MediaType, err = img.MediaType(); err != nil {
		return nil, fail(err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fail(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fail(err)
	}
	if res.Index == (v1.Hash{}) {
		got := cfg.Platform()
		if got == nil || got.OS != want.OS || got.Architecture != want.Architecture {
			have := "an unknown platform"
			var offered []string
			if got != nil {
				have = platformString(*got)
				offered = []string{have}
			}
			return nil, &Error{Ref: ref, Kind: ErrNoPlatform, Platforms: offered, Detail: fmt.Sprintf(
				"no variant for %s (Lambda architecture %s); the image is for %s only: choose another LAMBDA_ARCH or image",
				platformString(want), arch, have)}
		}
		res.Platform = *got
	}
	for _, l := range m.Layers {
		res.Size += l.Size
	}
	res.Layers = len(m.Layers)
	max := r.MaxImageSize
	if max <= 0 {
		max = DefaultMaxImageSize
	}
	if res.Size > max {
		return nil, &Error{Ref: ref, Kind: ErrTooLarge, Detail: fmt.Sprintf(
			"its layers add up to %s, over Lambda's limit of %s for a container image: use a smaller image",
			humanBytes(res.Size), humanBytes(max))}
	}
	res.Config = cfg
	res.Source = src.Context().Digest(res.Digest.String())
	res.Image = img
	return res, nil
}

// pickPlatform returns the index entry for want, preferring no variant (or
// v8 for arm64) over other variants, and every platform the index offers
// (attestations left out).
func pickPlatform(ms []v1.Descriptor, want v1.Platform) (*v1.Descriptor, []string) {
	var chosen *v1.Descriptor
	rank := func(v string) int {
		switch v {
		case "":
			return 0
		case "v8":
			return 1
		}
		return 2
	}
	var offered []string
	for i := range ms {
		m := &ms[i]
		if m.Platform == nil || m.Platform.OS == "unknown" || !m.MediaType.IsImage() {
			continue
		}
		offered = append(offered, platformString(*m.Platform))
		if m.Platform.OS != want.OS || m.Platform.Architecture != want.Architecture {
			continue
		}
		if chosen == nil || rank(m.Platform.Variant) < rank(chosen.Platform.Variant) {
			chosen = m
		}
	}
	return chosen, offered
}

func listOrNone(ps []string) string {
	if len(ps) == 0 {
		return "no runnable platform"
	}
	return strings.Join(ps, ", ")
}

// classify turns an error from a registry call into an *Error.
func (r *Resolver) classify(ctx context.Context, ref, host string, creds *DockerAuth, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("jobimage: resolve %s: %w", ref, ctx.Err())
	}
	return classifyRegistryError(ref, host, creds, err)
}

func classifyRegistryError(ref, host string, creds *DockerAuth, err error) error {
	var ie *Error
	if errors.As(err, &ie) {
		return ie
	}
	var pa *errPrivateAddr
	if errors.As(err, &pa) {
		return &Error{Ref: ref, Kind: ErrForbiddenRegistry, Err: err, Detail: fmt.Sprintf(
			"the registry %s is on a non-public address (%s); images are read only from registries on public addresses", host, pa.addr)}
	}
	var te *transport.Error
	if errors.As(err, &te) {
		code := func(cs ...transport.ErrorCode) bool {
			for _, d := range te.Errors {
				for _, c := range cs {
					if d.Code == c {
						return true
					}
				}
			}
			return false
		}
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden ||
			code(transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			return &Error{Ref: ref, Kind: ErrUnauthorized, Err: err, Detail: fmt.Sprintf(
				"the registry %s refused access (HTTP %d): the image does not exist or is private; for a private image give its credentials in DOCKER_AUTH_CONFIG%s",
				host, te.StatusCode, creds.storeHint())}
		case te.StatusCode == http.StatusNotFound ||
			code(transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode):
			return &Error{Ref: ref, Kind: ErrNotFound, Err: err, Detail: fmt.Sprintf(
				"not found on %s: check the name and the tag or digest", host)}
		case te.StatusCode == http.StatusTooManyRequests || code(transport.TooManyRequestsErrorCode):
			return &Error{Ref: ref, Kind: ErrUnreachable, Err: err, Detail: fmt.Sprintf(
				"the registry %s is limiting requests (HTTP 429); try again later", host)}
		default:
			return &Error{Ref: ref, Kind: ErrUnreachable, Err: err, Detail: fmt.Sprintf(
				"the registry %s answered HTTP %d", host, te.StatusCode)}
		}
	}
	var ne net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) || errors.As(err, &ne) {
		return &Error{Ref: ref, Kind: ErrUnreachable, Err: err, Detail: fmt.Sprintf(
			"could not reach the registry %s: %s", host, netReason(err))}
	}
	return fmt.Errorf("jobimage: resolve %s: %w", ref, err)
}

// netReason names a network failure without the URL (which may carry
// query parameters).
func netReason(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "no such host"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Op + ": " + opErr.Err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return "connection failed"
}

// humanBytes spells n as GiB or MiB.
func humanBytes(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
