package jobimage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
)

var testExecutor = []byte("#!/bin/sh\necho executor\n")

func resolve(t *testing.T, r *jobimage.Resolver, ref string, arch jobimage.Arch) *jobimage.Resolved {
	t.Helper()
	res, err := r.Resolve(context.Background(), ref, arch, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDeriveLayerByLayer(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ti := pushTestImages(t, reg, "jobs/base:1")
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	base := resolve(t, r, reg.Host+"/jobs/base:1", jobimage.X8664)
	d := &jobimage.Deriver{Target: reg.Repo("gsr/executors")}
	reg.ResetLog()

	out, err := d.Derive(context.Background(), base, testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	baseManifest, err := ti.amd64.Manifest()
	if err != nil {
		t.Fatal(err)
	}

	// Registry side: base layers mounted, only the executor layer and the
	// configuration uploaded, nothing downloaded from the base.
	var baseDigests []string
	for _, l := range baseManifest.Layers {
		baseDigests = append(baseDigests, l.Digest.String())
	}
	mounted := reg.Mounted()
	slices.Sort(mounted)
	slices.Sort(baseDigests)
	if !slices.Equal(mounted, baseDigests) {
		t.Errorf("mounted %q; want the base layers %q", mounted, baseDigests)
	}
	derived, err := remote.Image(out.Image)
	if err != nil {
		t.Fatal(err)
	}
	m, err := derived.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	top := m.Layers[len(m.Layers)-1]
	uploaded := reg.Uploaded()
	slices.Sort(uploaded)
	want := []string{m.Config.Digest.String(), top.Digest.String()}
	slices.Sort(want)
	if !slices.Equal(uploaded, want) {
		t.Errorf("uploaded blobs %q; want only the executor layer and the configuration %q", uploaded, want)
	}
	for _, req := range reg.Requests() {
		if strings.HasPrefix(req.Path, "/v2/jobs/base/blobs/") && req.Method == "GET" {
			t.Errorf("a base blob was downloaded: %s %s", req.Method, req.Path)
		}
	}
	for i, l := range out.Layers {
		wantHow := jobimage.LayerMounted
		if i == len(out.Layers)-1 {
			wantHow = jobimage.LayerUploaded
		}
		if l.How != wantHow {
			t.Errorf("Layers[%d].How = %s; want %s", i, l.How, wantHow)
		}
	}

	// Manifest: base layers unchanged, plus one.
	if len(m.Layers) != len(baseManifest.Layers)+1 {
		t.Fatalf("derived image has %d layers; want %d", len(m.Layers), len(baseManifest.Layers)+1)
	}
	for i, l := range baseManifest.Layers {
		if got := m.Layers[i]; got.Digest != l.Digest || got.Size != l.Size || got.MediaType != l.MediaType {
			t.Errorf("layer %d = %s %d %s; want the base's %s %d %s", i, got.Digest, got.Size, got.MediaType, l.Digest, l.Size, l.MediaType)
		}
	}
	if out.Digest.String() != out.Image.DigestStr() || out.Base != ti.amd64Digest {
		t.Errorf("Digest, Image, Base = %s, %s, %s", out.Digest, out.Image, out.Base)
	}
	if d, _ := derived.Digest(); d != out.Digest {
		t.Errorf("pushed digest %s; Derive said %s", d, out.Digest)
	}

	// Configuration.
	cf, err := derived.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	bcf, _ := ti.amd64.ConfigFile()
	if got := cf.Config.Entrypoint; !slices.Equal(got, []string{jobimage.ExecutorPath}) {
		t.Errorf("Entrypoint = %q; want [%s]", got, jobimage.ExecutorPath)
	}
	if cf.Config.Cmd != nil {
		t.Errorf("Cmd = %q; want none", cf.Config.Cmd)
	}
	if !slices.Equal(cf.Config.Env, bcf.Config.Env) {
		t.Errorf("Env = %q; want the base's %q", cf.Config.Env, bcf.Config.Env)
	}
	if cf.Config.User != "993:990" || cf.Config.WorkingDir != "/tmp" {
		t.Errorf("User, WorkingDir = %q, %q; want 993:990, /tmp", cf.Config.User, cf.Config.WorkingDir)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s; want linux/amd64", cf.OS, cf.Architecture)
	}
	if got := len(cf.RootFS.DiffIDs); got != len(bcf.RootFS.DiffIDs)+1 {
		t.Errorf("%d diff ids; want %d", got, len(bcf.RootFS.DiffIDs)+1)
	}
	var ep []string
	if err := json.Unmarshal([]byte(cf.Config.Labels[jobimage.LabelBaseEntrypoint]), &ep); err != nil || !slices.Equal(ep, bcf.Config.Entrypoint) {
		t.Errorf("label %s = %q; want the base's entrypoint %q", jobimage.LabelBaseEntrypoint, cf.Config.Labels[jobimage.LabelBaseEntrypoint], bcf.Config.Entrypoint)
	}
	if cf.Config.Labels[jobimage.LabelBase] != ti.amd64Digest.String() || cf.Config.Labels["org.opencontainers.image.title"] != "gsr test image" {
		t.Errorf("labels = %v; want the base's and the base digest", cf.Config.Labels)
	}

	// The executor layer.
	layers, _ := derived.Layers()
	files := tarFiles(t, layers[len(layers)-1])
	exe, ok := files[strings.TrimPrefix(jobimage.ExecutorPath, "/")]
	if !ok {
		t.Fatalf("executor layer holds %v; want %s", keys(files), jobimage.ExecutorPath)
	}
	if !bytes.Equal(exe.body, testExecutor) || exe.hdr.Mode != 0o755 || exe.hdr.Uid != 0 {
		t.Errorf("executor: mode %o uid %d body %q; want 0755, root, the binary", exe.hdr.Mode, exe.hdr.Uid, exe.body)
	}
	if len(files) != 3 {
		t.Errorf("executor layer holds %v; want opt/, opt/gsr/ and the executor", keys(files))
	}
}

type tarFile struct {
	hdr  *tar.Header
	body []byte
}

func tarFiles(t *testing.T, l v1.Layer) map[string]tarFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]tarFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = tarFile{h, b}
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Two preparations of one image agree on tag and digest; the second pushes
// nothing.
func TestDeriveIsDeterministic(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	pushTestImages(t, reg, "jobs/base:1")
	ref := reg.Host + "/jobs/base:1"
	d := &jobimage.Deriver{Target: reg.Repo("gsr/executors")}
	ctx := context.Background()

	first, err := d.Derive(ctx, resolve(t, &jobimage.Resolver{AllowPrivateRegistries: true}, ref, jobimage.ARM64), testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	reg.ResetLog()
	// A second, independent preparation (new resolver and deriver).
	d2 := &jobimage.Deriver{Target: reg.Repo("gsr/executors")}
	second, err := d2.Derive(ctx, resolve(t, &jobimage.Resolver{AllowPrivateRegistries: true}, ref, jobimage.ARM64), testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	if first.Digest != second.Digest || first.Tag != second.Tag {
		t.Errorf("second preparation gave %s %s; first %s %s", second.Tag, second.Digest, first.Tag, first.Digest)
	}
	if first.Reused || !second.Reused {
		t.Errorf("Reused = %v, %v; want false, true", first.Reused, second.Reused)
	}
	if up, mo := reg.Uploaded(), reg.Mounted(); len(up)+len(mo) != 0 {
		t.Errorf("second preparation uploaded %q and mounted %q; want nothing", up, mo)
	}
	if want := jobimage.TagFor(first.Base, first.Executor, jobimage.ARM64); first.Tag.TagStr() != want {
		t.Errorf("Tag = %s; want %s", first.Tag.TagStr(), want)
	}

	// Any of the three inputs changes the tag.
	other := []string{
		jobimage.TagFor(first.Base, first.Executor, jobimage.X8664),
		jobimage.TagFor(first.Base, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}, jobimage.ARM64),
		jobimage.TagFor(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("2", 64)}, first.Executor, jobimage.ARM64),
	}
	for _, tag := range other {
		if tag == first.Tag.TagStr() {
			t.Errorf("TagFor gave %s for different inputs", tag)
		}
	}
	amd, err := d.Derive(ctx, resolve(t, &jobimage.Resolver{AllowPrivateRegistries: true}, ref, jobimage.X8664), testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	if amd.Digest == first.Digest || amd.Tag == first.Tag {
		t.Errorf("x86_64 derived image = %s %s; the same as arm64's", amd.Tag, amd.Digest)
	}
}

func TestDeriveWhenMountsAreRefused(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{RefuseMounts: true})
	pushTestImages(t, reg, "jobs/base:1")
	base := resolve(t, &jobimage.Resolver{AllowPrivateRegistries: true}, reg.Host+"/jobs/base:1", jobimage.X8664)
	reg.ResetLog()
	d := &jobimage.Deriver{Target: reg.Repo("gsr/executors")}
	_, err := d.Derive(context.Background(), base, testExecutor)
	wantKind(t, err, jobimage.ErrMountRefused)
	if !strings.Contains(err.Error(), "refused to mount it from "+reg.Host+"/jobs/base") {
		t.Errorf("message %q does not say why", err)
	}
	if up := reg.Uploaded(); len(up) != 0 {
		t.Errorf("uploaded %q after a refused mount; want nothing", up)
	}

	d.AllowCopy = true
	out, err := d.Derive(context.Background(), base, testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range out.Layers[:len(out.Layers)-1] {
		if l.How != jobimage.LayerCopied {
			t.Errorf("Layers[%d].How = %s; want copied", i, l.How)
		}
	}
}

func TestDeriveFromAnotherRegistry(t *testing.T) {
	src := registrytest.New(t, registrytest.Options{})
	dst := registrytest.New(t, registrytest.Options{})
	pushTestImages(t, src, "jobs/base:1")
	base := resolve(t, &jobimage.Resolver{AllowPrivateRegistries: true}, src.Host+"/jobs/base:1", jobimage.X8664)
	d := &jobimage.Deriver{Target: dst.Repo("gsr/executors")}
	_, err := d.Derive(context.Background(), base, testExecutor)
	wantKind(t, err, jobimage.ErrMountRefused)
	if !strings.Contains(err.Error(), "another registry") {
		t.Errorf("message %q does not say why", err)
	}
	d.AllowCopy = true
	out, err := d.Derive(context.Background(), base, testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(out.Image); err != nil {
		t.Errorf("derived image %s cannot be read: %v", out.Image, err)
	}
	if got := len(dst.Uploaded()); got != len(out.Layers)+1 {
		t.Errorf("%d blobs uploaded; want every layer and the configuration (%d)", got, len(out.Layers)+1)
	}
}

func TestDeriveReportsEachStep(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	pushTestImages(t, reg, "jobs/base:1")
	d := &jobimage.Deriver{Target: reg.Repo("gsr/executors")}
	out, err := d.Derive(context.Background(), resolve(t, &jobimage.Resolver{AllowPrivateRegistries: true}, reg.Host+"/jobs/base:1", jobimage.X8664), testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	if out.DeriveTime <= 0 || out.PushTime <= 0 {
		t.Errorf("times = %v, %v; want each measured", out.DeriveTime, out.PushTime)
	}
	if _, err := name.NewDigest(out.Image.String()); err != nil || !strings.HasPrefix(out.Image.String(), reg.Host+"/gsr/executors@sha256:") {
		t.Errorf("Image = %s; want the target repository by digest", out.Image)
	}
}

// A base in the deployment's registry whose repository refuses mounts (an
// ECR pull-through cache repository) can take the derived image itself:
// every base layer is already there.
func TestDeriveIntoTheBaseRepository(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{RefuseMounts: true})
	pushTestImages(t, reg, "docker-hub/library/tool:1")
	base := resolve(t, &jobimage.Resolver{AllowPrivateRegistries: true}, reg.Host+"/docker-hub/library/tool:1", jobimage.X8664)
	reg.ResetLog()
	d := &jobimage.Deriver{Target: reg.Repo("gsr/executors"), IntoBaseRepository: true}
	out, err := d.Derive(context.Background(), base, testExecutor)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Image.Context().String(); got != reg.Host+"/docker-hub/library/tool" {
		t.Errorf("derived image in %s; want the base's repository", got)
	}
	for i, l := range out.Layers[:len(out.Layers)-1] {
		if l.How != jobimage.LayerPresent {
			t.Errorf("Layers[%d].How = %s; want present", i, l.How)
		}
	}
	if up, mo := reg.Uploaded(), reg.Mounted(); len(up) != 2 || len(mo) != 0 {
		t.Errorf("uploaded %q, mounted %q; want the executor layer and configuration only", up, mo)
	}
}
