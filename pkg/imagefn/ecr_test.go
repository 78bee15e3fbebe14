package imagefn_test

import (
	"context"
	"strings"
	"testing"

	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/mototest"
)

func TestECRAuthFromMoto(t *testing.T) {
	moto := mototest.Start(t)
	creds, err := imagefn.ECRAuth(context.Background(), awsclients.ECR(moto.Config(), moto.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := creds.Auth.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if ac.Username != "AWS" || ac.Password == "" {
		t.Errorf("credentials user %q, password set %v; want AWS and a token", ac.Username, ac.Password != "")
	}
	if want := mototest.AccountID + ".dkr.ecr." + mototest.Region + ".amazonaws.com"; creds.Registry != want {
		t.Errorf("Registry = %q; want %q", creds.Registry, want)
	}
	if creds.ExpiresAt.IsZero() {
		t.Error("ExpiresAt not set")
	}
}

// moto_server does not implement the pull-through cache rule operations
// (CreatePullThroughCacheRule and DescribePullThroughCacheRules answer
// HTTP 500 NotImplemented), so only what this package decides is tested:
// validation, the request, and the map jobimage.Resolver uses.
func TestPullThroughRules(t *testing.T) {
	const secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
	rules := []imagefn.PullThroughRule{
		{Upstream: ecrtypes.UpstreamRegistryDockerHub, Prefix: "docker-hub", CredentialARN: secret},
		{Upstream: ecrtypes.UpstreamRegistryGitLabContainerRegistry, Prefix: "gitlab", CredentialARN: strings.Replace(secret, "docker-hub", "gitlab", 1)},
	}
	m := imagefn.PullThroughMap("123456789012.dkr.ecr.us-east-1.amazonaws.com", rules)
	if m["index.docker.io"] != "123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub" ||
		m["registry.gitlab.com"] != "123456789012.dkr.ecr.us-east-1.amazonaws.com/gitlab" || len(m) != 2 {
		t.Errorf("PullThroughMap = %v", m)
	}
	bad := map[string]imagefn.PullThroughRule{
		"unknown upstream": {Upstream: "quay", Prefix: "q", CredentialARN: secret},
		"no prefix":        {Upstream: ecrtypes.UpstreamRegistryDockerHub, CredentialARN: secret},
		"secret name":      {Upstream: ecrtypes.UpstreamRegistryDockerHub, Prefix: "d", CredentialARN: "arn:aws:secretsmanager:us-east-1:1:secret:dockerhub"},
	}
	for name, r := range bad {
		// Validation fails before any call: a nil client is never used.
		if err := imagefn.EnsurePullThroughRules(context.Background(), nil, []imagefn.PullThroughRule{r}); err == nil {
			t.Errorf("%s: EnsurePullThroughRules accepted %+v", name, r)
		}
	}
}
