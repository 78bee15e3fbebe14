package jobimage_test

import (
	"context"
	"encoding/base64"
	"net"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
)

func TestResolvePicksTheArchitecturesManifest(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ti := pushTestImages(t, reg, "group/tool:1")
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	ctx := context.Background()
	for _, tt := range []struct {
		arch jobimage.Arch
		want string
	}{{jobimage.ARM64, ti.arm64Digest.String()}, {jobimage.X8664, ti.amd64Digest.String()}} {
		t.Run(string(tt.arch), func(t *testing.T) {
			res, err := r.Resolve(ctx, reg.Host+"/group/tool:1", tt.arch, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest.String() != tt.want {
				t.Errorf("Digest = %s; want %s", res.Digest, tt.want)
			}
			if res.Index != ti.index {
				t.Errorf("Index = %s; want %s", res.Index, ti.index)
			}
			if got, want := res.Platform.Architecture, tt.arch.Platform().Architecture; got != want {
				t.Errorf("Platform.Architecture = %s; want %s", got, want)
			}
			if got, want := res.Source.String(), reg.Host+"/group/tool@"+tt.want; got != want {
				t.Errorf("Source = %s; want %s", got, want)
			}
			if res.Layers != 2 || res.Size <= 0 {
				t.Errorf("Layers, Size = %d, %d; want 2 layers of some size", res.Layers, res.Size)
			}
			if got := res.Config.Config.Env; len(got) != 2 || got[1] != "IMAGE_FLAVOUR=test" {
				t.Errorf("Config.Env = %q; want the image's", got)
			}
		})
	}
}

func TestResolveByDigest(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ti := pushTestImages(t, reg, "group/tool:1")
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	ctx := context.Background()

	res, err := r.Resolve(ctx, reg.Host+"/group/tool@"+ti.amd64Digest.String(), jobimage.X8664, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != ti.amd64Digest || res.Index.Hex != "" {
		t.Errorf("Digest, Index = %s, %q; want %s and no index", res.Digest, res.Index.Hex, ti.amd64Digest)
	}

	// A single-architecture manifest for another architecture.
	_, err = r.Resolve(ctx, reg.Host+"/group/tool@"+ti.amd64Digest.String(), jobimage.ARM64, nil)
	ie := wantKind(t, err, jobimage.ErrNoPlatform)
	if len(ie.Platforms) != 1 || ie.Platforms[0] != "linux/amd64" {
		t.Errorf("Platforms = %q; want [linux/amd64]", ie.Platforms)
	}
	if !strings.Contains(err.Error(), "linux/amd64 only") {
		t.Errorf("message %q does not name the platform there is", err)
	}

	// The index by digest.
	res, err = r.Resolve(ctx, reg.Host+"/group/tool@"+ti.index.String(), jobimage.ARM64, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != ti.arm64Digest {
		t.Errorf("Digest = %s; want %s", res.Digest, ti.arm64Digest)
	}
}

func TestResolveNoVariantNamesTheOnesThereAre(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	amd := registrytest.BusyboxImage(t, "amd64")
	s390 := registrytest.Image(t, "s390x", v1.Config{}, registrytest.Layer(t, registrytest.Entry{Name: "s390", Body: []byte("x")}))
	reg.PushIndex(t, "only/amd:1", registrytest.Index(t, amd, s390))
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	_, err := r.Resolve(context.Background(), reg.Host+"/only/amd:1", jobimage.ARM64, nil)
	ie := wantKind(t, err, jobimage.ErrNoPlatform)
	if strings.Join(ie.Platforms, " ") != "linux/amd64 linux/s390x" {
		t.Errorf("Platforms = %q; want [linux/amd64 linux/s390x]", ie.Platforms)
	}
	for _, want := range []string{"linux/arm64", "arm64", "offers linux/amd64, linux/s390x", "LAMBDA_ARCH"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}

func TestResolveNotFound(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	pushTestImages(t, reg, "group/tool:1")
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	for _, ref := range []string{
		reg.Host + "/group/tool:2",
		reg.Host + "/group/nothing:1",
		reg.Host + "/group/tool@sha256:" + strings.Repeat("0", 64),
	} {
		_, err := r.Resolve(context.Background(), ref, jobimage.X8664, nil)
		wantKind(t, err, jobimage.ErrNotFound)
		if !strings.Contains(err.Error(), ref) {
			t.Errorf("message %q does not name the image", err)
		}
	}
}

func TestResolveBadReference(t *testing.T) {
	r := &jobimage.Resolver{}
	for _, ref := range []string{"", "UPPER/Case:1", "a:b:c", "x@sha256:123"} {
		_, err := r.Resolve(context.Background(), ref, jobimage.X8664, nil)
		wantKind(t, err, jobimage.ErrBadReference)
	}
}

func TestResolveOverTheSizeLimit(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	pushTestImages(t, reg, "group/tool:1")
	r := &jobimage.Resolver{AllowPrivateRegistries: true, MaxImageSize: 1 << 20}
	_, err := r.Resolve(context.Background(), reg.Host+"/group/tool:1", jobimage.X8664, nil)
	wantKind(t, err, jobimage.ErrTooLarge)
	if !strings.Contains(err.Error(), "limit of 1.0 MiB") {
		t.Errorf("message %q does not state the limit", err)
	}
	if jobimage.DefaultMaxImageSize != 10<<30 {
		t.Errorf("DefaultMaxImageSize = %d; want Lambda's 10 GiB", jobimage.DefaultMaxImageSize)
	}
}

func TestResolveUnreachableRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	_, err = r.Resolve(context.Background(), addr+"/x/y:1", jobimage.X8664, nil)
	wantKind(t, err, jobimage.ErrUnreachable)
	if !strings.Contains(err.Error(), "could not reach the registry "+addr) {
		t.Errorf("message %q does not name the registry", err)
	}
}

// A job's image must not make the preparation function reach loopback,
// link-local (metadata) or private addresses.
func TestResolveRefusesNonPublicRegistries(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	pushTestImages(t, reg, "group/tool:1")
	reg.ResetLog()
	_, port, _ := net.SplitHostPort(reg.Host)
	r := &jobimage.Resolver{}
	for _, ref := range []string{
		reg.Host + "/group/tool:1",
		"localhost:" + port + "/group/tool:1",
		"[::1]:" + port + "/group/tool:1",
		"169.254.169.254/latest/meta-data:1",
		"10.1.2.3:5000/x:1",
	} {
		_, err := r.Resolve(context.Background(), ref, jobimage.X8664, nil)
		wantKind(t, err, jobimage.ErrForbiddenRegistry)
	}
	if got := reg.Requests(); len(got) != 0 {
		t.Errorf("the loopback registry received %d requests; want none", len(got))
	}
}

func TestResolveWithCredentials(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{User: "deploy", Password: "s3cret-pw"})
	ti := pushTestImages(t, reg, "private/tool:1")
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	ref := reg.Host + "/private/tool:1"
	ctx := context.Background()
	b64 := base64.StdEncoding.EncodeToString

	ok := map[string]string{
		"auth":              `{"auths":{"` + reg.Host + `":{"auth":"` + b64([]byte("deploy:s3cret-pw")) + `"}}}`,
		"username/password": `{"auths":{"https://` + reg.Host + `/v2/":{"username":"deploy","password":"s3cret-pw"}}}`,
	}
	for name, cfg := range ok {
		t.Run(name, func(t *testing.T) {
			creds, err := jobimage.ParseDockerAuthConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Resolve(ctx, ref, jobimage.X8664, creds)
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest != ti.amd64Digest {
				t.Errorf("Digest = %s; want %s", res.Digest, ti.amd64Digest)
			}
		})
	}

	refused := map[string]string{
		"none":           ``,
		"wrong password": `{"auths":{"` + reg.Host + `":{"auth":"` + b64([]byte("deploy:wrong")) + `"}}}`,
		"other registry": `{"auths":{"registry.example.com":{"auth":"` + b64([]byte("deploy:s3cret-pw")) + `"}}}`,
	}
	for name, cfg := range refused {
		t.Run(name, func(t *testing.T) {
			creds, err := jobimage.ParseDockerAuthConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Resolve(ctx, ref, jobimage.X8664, creds)
			wantKind(t, err, jobimage.ErrUnauthorized)
			if !strings.Contains(err.Error(), "DOCKER_AUTH_CONFIG") {
				t.Errorf("message %q does not say where credentials go", err)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong") {
				t.Errorf("message %q shows a password", err)
			}
		})
	}

	t.Run("credential helper", func(t *testing.T) {
		creds, err := jobimage.ParseDockerAuthConfig(`{"credHelpers":{"` + reg.Host + `":"ecr-login"}}`)
		if err != nil {
			t.Fatal(err)
		}
		reg.ResetLog()
		_, err = r.Resolve(ctx, ref, jobimage.X8664, creds)
		wantKind(t, err, jobimage.ErrCredentialHelper)
		for _, want := range []string{`"ecr-login"`, "cannot run on Lambda", `"auths"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		}
		if n := len(reg.Requests()); n != 0 {
			t.Errorf("registry received %d requests; want none", n)
		}
	})
	t.Run("credential store", func(t *testing.T) {
		creds, err := jobimage.ParseDockerAuthConfig(`{"credsStore":"desktop"}`)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Resolve(ctx, ref, jobimage.X8664, creds)
		wantKind(t, err, jobimage.ErrUnauthorized)
		if !strings.Contains(err.Error(), `credential store "desktop"`) {
			t.Errorf("message %q does not explain the credential store", err)
		}
	})
}

// The job's CI_REGISTRY credentials fill in only what DOCKER_AUTH_CONFIG
// lacks: its own entry for the registry wins, however either spells the
// registry, as gitlab-runner orders them.
func TestJobRegistryCredentialsComeAfterDockerAuthConfig(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{User: "deploy", Password: "s3cret-pw"})
	ti := pushTestImages(t, reg, "private/tool:1")
	r := &jobimage.Resolver{AllowPrivateRegistries: true}
	tests := []struct {
		name, dockerAuthConfig, ciRegistry, user, password string
	}{
		{"DOCKER_AUTH_CONFIG's entry wins", `{"auths":{"https://` + reg.Host + `/v2/":{"username":"deploy","password":"s3cret-pw"}}}`, reg.Host, "ci-user", "wrong"},
		{"spelled with a scheme", `{"auths":{"` + reg.Host + `":{"username":"deploy","password":"s3cret-pw"}}}`, "https://" + reg.Host, "ci-user", "wrong"},
		{"the job's fill a gap", `{"auths":{"registry.example.com":{"username":"u","password":"p"}}}`, reg.Host, "deploy", "s3cret-pw"},
		{"the job's alone", ``, reg.Host, "deploy", "s3cret-pw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := jobimage.ParseDockerAuthConfig(tt.dockerAuthConfig)
			if err != nil {
				t.Fatal(err)
			}
			if err := creds.AddBasicUnlessSet(tt.ciRegistry, tt.user, tt.password); err != nil {
				t.Fatal(err)
			}
			res, err := r.Resolve(context.Background(), reg.Host+"/private/tool:1", jobimage.X8664, creds)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if res.Digest != ti.amd64Digest {
				t.Errorf("Digest = %s; want %s", res.Digest, ti.amd64Digest)
			}
		})
	}

	// Docker Hub's spellings are one registry: CI_REGISTRY=docker.io adds
	// nothing beside DOCKER_AUTH_CONFIG's index.docker.io entry.
	creds, err := jobimage.ParseDockerAuthConfig(`{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := creds.AddBasicUnlessSet("docker.io", "ci-user", "wrong"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(creds.Registries(), " "); got != "index.docker.io" {
		t.Errorf("Registries = %q; want only index.docker.io", got)
	}
	if err := creds.AddBasicUnlessSet("not a registry/", "u", "p"); err == nil {
		t.Error("AddBasicUnlessSet accepted a registry that is no address")
	}
}

func TestParseDockerAuthConfigRejectsBadInputWithoutQuotingIt(t *testing.T) {
	for name, cfg := range map[string]string{
		"not json":    `{"auths": {"r.example.com": {"auth": "c2VjcmV0LXB3"`,
		"not base64":  `{"auths":{"r.example.com":{"auth":"secret-pw!!"}}}`,
		"no colon":    `{"auths":{"r.example.com":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("secret-pw")) + `"}}}`,
		"empty entry": `{"auths":{"r.example.com":{}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := jobimage.ParseDockerAuthConfig(cfg)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "secret-pw") || strings.Contains(err.Error(), "c2VjcmV0LXB3") {
				t.Errorf("error %q quotes the secret", err)
			}
		})
	}
	a, err := jobimage.ParseDockerAuthConfig(`{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"registry.gitlab.com":{"username":"u","password":"p"},"docker.io":{"auth":"dTpw"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.Registries(), " "); got != "index.docker.io registry.gitlab.com" {
		t.Errorf("Registries = %q; want Docker Hub's keys folded into index.docker.io", got)
	}
}

func TestSourceRewritesPullThroughRegistries(t *testing.T) {
	r := &jobimage.Resolver{PullThrough: map[string]string{
		"index.docker.io":     "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub",
		"registry.gitlab.com": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gitlab",
	}}
	digest := "sha256:" + strings.Repeat("ab", 32)
	for ref, want := range map[string]string{
		"golang:1.23":                             "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/golang:1.23",
		"bitnami/kubectl":                         "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/bitnami/kubectl:latest",
		"docker.io/library/alpine@" + digest:      "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/alpine@" + digest,
		"registry.gitlab.com/group/proj/img:tag":  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gitlab/group/proj/img:tag",
		"host.example.com:5000/x@" + digest:       "host.example.com:5000/x@" + digest,
		"quay.io/prometheus/node-exporter:v1.8.0": "quay.io/prometheus/node-exporter:v1.8.0",
	} {
		got, err := r.Source(ref)
		if err != nil {
			t.Errorf("Source(%q): %v", ref, err)
			continue
		}
		if got.String() != want {
			t.Errorf("Source(%q) = %s; want %s", ref, got, want)
		}
	}
}

// Through a pull-through cache, the upstream registry is asked (with the
// job's credentials) only for the manifest's digest, and the image is read
// from the cache.
func TestResolveThroughPullThroughCache(t *testing.T) {
	upstream := registrytest.New(t, registrytest.Options{User: "me", Password: "pw"})
	cache := registrytest.New(t, registrytest.Options{User: "AWS", Password: "ecr-token"})
	ti := pushTestImages(t, upstream, "library/tool:1")
	pushTestImages(t, cache, "hub/library/tool:1")
	upstream.ResetLog()
	cache.ResetLog()
	r := &jobimage.Resolver{
		AllowPrivateRegistries: true,
		PullThrough:            map[string]string{upstream.Host: cache.Host + "/hub"},
		CacheAuth:              basicAuth{"AWS", "ecr-token"},
	}
	creds, _ := jobimage.ParseDockerAuthConfig(`{"auths":{"` + upstream.Host + `":{"username":"me","password":"pw"}}}`)
	res, err := r.Resolve(context.Background(), upstream.Host+"/library/tool:1", jobimage.ARM64, creds)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Source.String(), cache.Host+"/hub/library/tool@"+ti.arm64Digest.String(); got != want {
		t.Errorf("Source = %s; want %s", got, want)
	}
	for _, req := range upstream.Requests() {
		if req.Method != "HEAD" && req.Path != "/v2/" {
			t.Errorf("upstream received %s %s; want only HEAD of the manifest", req.Method, req.Path)
		}
	}
	if len(cache.Requests()) == 0 {
		t.Error("the cache received no request")
	}

	// Without the job's own right to the image, the cache is not asked.
	cache.ResetLog()
	_, err = r.Resolve(context.Background(), upstream.Host+"/library/tool:1", jobimage.ARM64, nil)
	wantKind(t, err, jobimage.ErrUnauthorized)
	if n := len(cache.Requests()); n != 0 {
		t.Errorf("the cache received %d requests for a job without access upstream", n)
	}
}
