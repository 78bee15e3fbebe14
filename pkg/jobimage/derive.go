package jobimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user a derived image runs as: the one Lambda runs container images
// as (Lambda ignores the image's USER; local mode reads it from here).
const (
	LambdaUID = 993
	LambdaGID = 990
)

// WorkingDir is the derived image's working directory: /tmp, the one place
// Lambda lets a function write; the executor chooses the job's own
// directories.
const WorkingDir = "/tmp"

// derivationVersion is part of every derived tag: change it whenever the
// derivation changes, so an old derived image is never taken for a new one.
const derivationVersion = "1"

// Labels a derived image carries: its base and what the base's
// configuration said, which the executor needs to honour the image's
// entrypoint the way gitlab-runner does.
const (
	LabelBase           = "dev.gitlab-serverless-runner.base"            // base image manifest digest
	LabelBaseRef        = "dev.gitlab-serverless-runner.base.ref"        // reference as the job wrote it
	LabelBaseEntrypoint = "dev.gitlab-serverless-runner.base.entrypoint" // JSON array
	LabelBaseCmd        = "dev.gitlab-serverless-runner.base.cmd"        // JSON array
	LabelBaseUser       = "dev.gitlab-serverless-runner.base.user"
	LabelBaseWorkingDir = "dev.gitlab-serverless-runner.base.workdir"
	LabelExecutor       = "dev.gitlab-serverless-runner.executor" // executor binary digest
)

// Deriver derives executor images and pushes them to Target. Configure it
// before first use; it is then safe for concurrent use.
type Deriver struct {
	// Target is the repository derived images are pushed to: the
	// deployment's ECR repository, "<account>.dkr.ecr.<region>.amazonaws.com/<name>".
	Target name.Repository
	// TargetAuth authenticates to Target's registry (imagefn.ECRAuth);
	// nil means anonymous.
	TargetAuth authn.Authenticator
	// AllowCopy lets Derive copy a base layer (download it from the base's
	// registry and upload it to Target) when it cannot be mounted: the base
	// is on another registry, or Target's registry refuses the mount (ECR
	// without blob mounting, or a base in a pull-through cache repository).
	// Without it such an image fails with ErrMountRefused.
	AllowCopy bool
	// IntoBaseRepository pushes the derived image into the base's own
	// repository instead of Target's when both are on Target's registry
	// (a base in the deployment's pull-through cache): every base layer
	// is already there, so nothing is mounted or copied.
	IntoBaseRepository bool

	once   sync.Once
	rt     http.RoundTripper
	layers sync.Map // executor digest and media type → *bytesLayer
}

// LayerPlacement says how a layer came to be in the target repository.
type LayerPlacement string

// The ways a layer reaches the target repository.
const (
	LayerPresent  LayerPlacement = "present"  // already there
	LayerMounted  LayerPlacement = "mounted"  // cross-repository mount, no bytes moved
	LayerCopied   LayerPlacement = "copied"   // downloaded from the base and uploaded (AllowCopy)
	LayerUploaded LayerPlacement = "uploaded" // the executor layer
)

// LayerResult is one layer of a derived image.
type LayerResult struct {
	Digest v1.Hash
	Size   int64
	How    LayerPlacement
}

// Derived is an executor image in the target repository.
type Derived struct {
	// Image is the image by digest, the ImageUri a function is created
	// from; Tag is its deterministic tag (TagFor).
	Image name.Digest
	Tag   name.Tag
	// Digest is the derived manifest's digest; Base the base's;
	// Executor the executor binary's.
	Digest, Base, Executor v1.Hash
	Arch                   Arch
	// Reused is true when Tag already held this image: nothing was
	// pushed and Layers is empty.
	Reused bool
	// Layers lists the layers in image order (base layers, then the
	// executor layer) and how each reached Target.
	Layers []LayerResult
	// DeriveTime is the time spent building the image (layer,
	// configuration, manifest); PushTime the time spent on registry
	// writes (and the check for an existing tag).
	DeriveTime, PushTime time.Duration
}

// TagFor returns the tag of the image derived from base with the executor
// binary of digest executor for arch: "gsr-" and 32 hex digits of a hash
// of the three (and the derivation's version).
func TagFor(base, executor v1.Hash, arch Arch) string {
	h := sha256.New()
	fmt.Fprintf(h, "gitlab-serverless-runner derived image v%s\n%s\n%s\n%s\n", derivationVersion, base, executor, arch)
	return "gsr-" + hex.EncodeToString(h.Sum(nil))[:32]
}

func (d *Deriver) transport() http.RoundTripper {
	d.once.Do(func() {
		// Target is the deployment's own registry: trusted, so a VPC
		// endpoint's private address is fine.
		d.rt = newTransport([]string{d.Target.RegistryStr()}, true)
	})
	return d.rt
}

func (d *Deriver) auth() authn.Authenticator {
	if d.TargetAuth == nil {
		return authn.Anonymous
	}
	return d.TargetAuth
}

// Derive builds the executor image of base (the job's image plus one layer
// holding executor at ExecutorPath as the entrypoint, CMD cleared, base's
// environment kept, working directory WorkingDir, user LambdaUID:LambdaGID)
// and pushes it to Target under TagFor's tag. Base layers are mounted from
// base's repository when Target is on the same registry; only the executor
// layer, the configuration and the manifest are uploaded. If the tag
// already holds the same image, nothing is pushed.
//
// Errors: ErrMountRefused (an *Error) when a base layer can be neither
// mounted nor, without AllowCopy, copied; otherwise registry errors wrapped
// with "jobimage: push …" (a deployment problem, not the job's).
func (d *Deriver) Derive(ctx context.Context, base *Resolved, executor []byte) (*Derived, error) {
	if base == nil || base.Image == nil || base.Config == nil {
		return nil, fmt.Errorf("jobimage: derive: no resolved base image")
	}
	if d.Target.RepositoryStr() == "" {
		return nil, fmt.Errorf("jobimage: derive %s: no target repository", base.Ref)
	}
	target := d.Target
	if d.IntoBaseRepository && base.Source.RegistryStr() == d.Target.RegistryStr() {
		target = base.Source.Context()
	}
	start := time.Now()
	img, exeDigest, err := d.derive(base, executor)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("jobimage: derive %s: %w", base.Ref, err)
	}
	out := &Derived{
		Tag: target.Tag(TagFor(base.Digest, exeDigest, base.Arch)), Image: target.Digest(digest.String()),
		Digest: digest, Base: base.Digest, Executor: exeDigest, Arch: base.Arch,
	}
	out.DeriveTime = time.Since(start)

	start = time.Now()
	defer func() { out.PushTime = time.Since(start) }()
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(d.transport()), remote.WithAuth(d.auth()),
		remote.WithRetryBackoff(retryBackoff), remote.WithUserAgent(userAgent)}
	if desc, err := remote.Head(out.Tag, opts...); err == nil && desc.Digest == digest {
		out.Reused = true
		return out, nil
	}

	scopes := []string{target.Scope(transport.PushScope)}
	sameRegistry := base.Source.RegistryStr() == target.RegistryStr()
	if sameRegistry && base.Source.Context() != target {
		scopes = append(scopes, base.Source.Context().Scope(transport.PullScope))
	}
	rt, err := transport.NewWithContext(ctx, target.Registry, d.auth(), d.transport(), scopes)
	if err != nil {
		return nil, fmt.Errorf("jobimage: push %s: authenticate to %s: %w", out.Tag, target.RegistryStr(), err)
	}
	client := &http.Client{Transport: rt}
	m, err := base.Image.Manifest()
	if err != nil {
		return nil, fmt.Errorf("jobimage: derive %s: read base manifest: %w", base.Ref, err)
	}
	out.Layers = make([]LayerResult, len(m.Layers)+1)
	errs := make([]error, len(m.Layers))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, l := range m.Layers {
		out.Layers[i] = LayerResult{Digest: l.Digest, Size: l.Size}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out.Layers[i].How, errs[i] = d.place(ctx, client, target, base, l.Digest, sameRegistry, opts)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if err := remote.Write(out.Tag, img, opts...); err != nil {
		return nil, fmt.Errorf("jobimage: push %s: %w", out.Tag, err)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("jobimage: derive %s: %w", base.Ref, err)
	}
	top := ls[len(ls)-1]
	topDigest, _ := top.Digest()
	topSize, _ := top.Size()
	out.Layers[len(m.Layers)] = LayerResult{Digest: topDigest, Size: topSize, How: LayerUploaded}
	return out, nil
}

// derive returns the derived image (not yet pushed) and the executor's
// digest.
//
// The executor layer is built (and compressed) once per executor and
// media type and kept for later images.
func (d *Deriver) derive(base *Resolved, executor []byte) (v1.Image, v1.Hash, error) {
	mt := types.OCILayer
	if base.MediaType == types.DockerManifestSchema2 {
		mt = types.DockerLayer
	}
	exeDigest := sha256Hash(executor)
	key := exeDigest.String() + " " + string(mt)
	var layer *bytesLayer
	if l, ok := d.layers.Load(key); ok {
		layer = l.(*bytesLayer)
	} else {
		var err error
		if layer, err = executorLayer(executor, mt); err != nil {
			return nil, v1.Hash{}, err
		}
		d.layers.Store(key, layer)
	}
	img, err := mutate.Append(base.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   base.Config.Created,
		CreatedBy: "gitlab-serverless-runner: executor at " + ExecutorPath,
		Comment:   "executor " + exeDigest.String(),
	}})
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("jobimage: derive %s: %w", base.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("jobimage: derive %s: %w", base.Ref, err)
	}
	cf = cf.DeepCopy()
	bc := base.Config.Config
	labels := map[string]string{}
	for k, v := range bc.Labels {
		labels[k] = v
	}
	jsonList := func(s []string) string {
		if s == nil {
			s = []string{}
		}
		b, _ := json.Marshal(s)
		return string(b)
	}
	labels[LabelBase] = base.Digest.String()
	labels[LabelBaseRef] = base.Ref
	labels[LabelBaseEntrypoint] = jsonList(bc.Entrypoint)
	labels[LabelBaseCmd] = jsonList(bc.Cmd)
	labels[LabelBaseUser] = bc.User
	labels[LabelBaseWorkingDir] = bc.WorkingDir
	labels[LabelExecutor] = exeDigest.String()
	cf.Config.Labels = labels
	cf.Config.Entrypoint = []string{ExecutorPath}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = WorkingDir
	cf.Config.User = strconv.Itoa(LambdaUID) + ":" + strconv.Itoa(LambdaGID)
	cf.Config.Healthcheck = nil
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("jobimage: derive %s: %w", base.Ref, err)
	}
	return img, exeDigest, nil
}

// place makes one base layer present in Target: already there, mounted
// from the base's repository, or (AllowCopy) copied.
func (d *Deriver) place(ctx context.Context, client *http.Client, target name.Repository, base *Resolved, digest v1.Hash, sameRegistry bool, opts []remote.Option) (LayerPlacement, error) {
	blobURL := repoURL(target, "/blobs/"+digest.String())
	if status, err := d.do(ctx, client, http.MethodHead, blobURL.String()); err != nil {
		return "", fmt.Errorf("jobimage: push: check layer %s: %w", digest, err)
	} else if status == http.StatusOK {
		return LayerPresent, nil
	}
	if sameRegistry {
		u := repoURL(target, "/blobs/uploads/")
		u.RawQuery = url.Values{"mount": {digest.String()}, "from": {base.Source.RepositoryStr()}}.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
		if err != nil {
			return "", fmt.Errorf("jobimage: push: mount layer %s: %w", digest, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("jobimage: push: mount layer %s: %w", digest, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusCreated:
			return LayerMounted, nil
		case http.StatusAccepted:
			// The registry opened an upload instead: cancel it.
			if loc, err := resp.Location(); err == nil {
				_, _ = d.do(ctx, client, http.MethodDelete, loc.String())
			}
		default:
			return "", fmt.Errorf("jobimage: push: mount layer %s: %w", digest, transport.CheckError(resp, http.StatusCreated))
		}
	}
	if !d.AllowCopy {
		why := "the target registry refused to mount it from " + base.Source.Context().Name()
		if !sameRegistry {
			why = "it is on " + base.Source.RegistryStr() + ", another registry than " + target.RegistryStr()
		}
		return "", &Error{Ref: base.Ref, Kind: ErrMountRefused, Detail: fmt.Sprintf(
			"layer %s cannot be mounted into %s: %s, and copying layers is off", digest, target.Name(), why)}
	}
	layer, err := base.Image.LayerByDigest(digest)
	if err != nil {
		return "", fmt.Errorf("jobimage: push: copy layer %s: %w", digest, err)
	}
	if err := remote.WriteLayer(target, layer, opts...); err != nil {
		return "", fmt.Errorf("jobimage: push: copy layer %s: %w", digest, err)
	}
	return LayerCopied, nil
}

func repoURL(r name.Repository, p string) *url.URL {
	return &url.URL{Scheme: r.Scheme(), Host: r.RegistryStr(), Path: "/v2/" + r.RepositoryStr() + p}
}

func (d *Deriver) do(ctx context.Context, client *http.Client, method, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
