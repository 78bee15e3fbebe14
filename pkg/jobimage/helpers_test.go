package jobimage_test

import (
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/jobimage/registrytest"
)

// testImages is the test image in both architectures, pushed as one index.
type testImages struct {
	reg          *registrytest.Registry
	amd64, arm64 v1.Image
	amd64Digest  v1.Hash
	arm64Digest  v1.Hash
	index        v1.Hash
}

// pushTestImages pushes the two-architecture test image to reg as ref
// ("repo:tag").
func pushTestImages(t *testing.T, reg *registrytest.Registry, ref string) testImages {
	t.Helper()
	ti := testImages{reg: reg,
		amd64: registrytest.BusyboxImage(t, "amd64"),
		arm64: registrytest.BusyboxImage(t, "arm64")}
	var err error
	if ti.amd64Digest, err = ti.amd64.Digest(); err != nil {
		t.Fatal(err)
	}
	if ti.arm64Digest, err = ti.arm64.Digest(); err != nil {
		t.Fatal(err)
	}
	if ti.amd64Digest == ti.arm64Digest {
		t.Fatalf("the two architectures' manifests are the same (%s)", ti.amd64Digest)
	}
	ti.index = reg.PushIndex(t, ref, registrytest.Index(t, ti.amd64, ti.arm64))
	return ti
}

func wantKind(t *testing.T, err, kind error) *jobimage.Error {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v; want %v", err, kind)
	}
	var ie *jobimage.Error
	if !errors.As(err, &ie) {
		t.Fatalf("error %v is not a *jobimage.Error", err)
	}
	return ie
}

// basicAuth is a fixed user and password.
type basicAuth struct{ user, pass string }

func (b basicAuth) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.pass}, nil
}
