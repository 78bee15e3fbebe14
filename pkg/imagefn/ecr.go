package imagefn

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
)

// ECRAPI is the part of the ECR client this package uses; *ecr.Client
// implements it.
type ECRAPI interface {
	GetAuthorizationToken(context.Context, *ecr.GetAuthorizationTokenInput, ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
	DescribePullThroughCacheRules(context.Context, *ecr.DescribePullThroughCacheRulesInput, ...func(*ecr.Options)) (*ecr.DescribePullThroughCacheRulesOutput, error)
	CreatePullThroughCacheRule(context.Context, *ecr.CreatePullThroughCacheRuleInput, ...func(*ecr.Options)) (*ecr.CreatePullThroughCacheRuleOutput, error)
}

var _ ECRAPI = (*ecr.Client)(nil)

// ECRCredentials are registry credentials for the account's ECR registry,
// for jobimage.Resolver.CacheAuth and jobimage.Deriver.TargetAuth.
type ECRCredentials struct {
	// Auth is the registry user ("AWS") and token.
	Auth authn.Authenticator
	// Registry is the registry host, "<account>.dkr.ecr.<region>.amazonaws.com".
	Registry string
	// ExpiresAt is when the token expires (12 hours after it was made):
	// fetch new credentials before then.
	ExpiresAt time.Time
}

// ECRAuth returns credentials for the account's ECR registry from
// GetAuthorizationToken. The error never contains the token.
func ECRAuth(ctx context.Context, c ECRAPI) (ECRCredentials, error) {
	out, err := c.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return ECRCredentials{}, fmt.Errorf("imagefn: get ECR authorization token: %w", err)
	}
	if len(out.AuthorizationData) == 0 {
		return ECRCredentials{}, errors.New("imagefn: get ECR authorization token: no authorization data")
	}
	d := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(d.AuthorizationToken))
	if err != nil {
		return ECRCredentials{}, errors.New("imagefn: get ECR authorization token: the token is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return ECRCredentials{}, errors.New("imagefn: get ECR authorization token: the token is not user:password")
	}
	host := aws.ToString(d.ProxyEndpoint)
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	return ECRCredentials{
		Auth:      &authn.Basic{Username: user, Password: pass},
		Registry:  strings.TrimSuffix(host, "/"),
		ExpiresAt: aws.ToTime(d.ExpiresAt),
	}, nil
}

// PullThroughRule is an ECR pull-through cache rule for one upstream
// registry.
type PullThroughRule struct {
	// Upstream is "docker-hub" or "gitlab-container-registry" (ECR's
	// names).
	Upstream ecrtypes.UpstreamRegistry
	// Prefix is the ECR repository prefix the cache's repositories get,
	// e.g. "docker-hub".
	Prefix string
	// CredentialARN is the Secrets Manager secret (its name must start
	// with "ecr-pullthroughcache/") holding the upstream user and token;
	// ECR requires one for both registries.
	CredentialARN string
}

// upstreams are the registries this package makes rules for: ECR's upstream
// URL and the host a job's reference names (go-containerregistry's name,
// jobimage.Resolver.PullThrough's key).
var upstreams = map[ecrtypes.UpstreamRegistry]struct{ url, host string }{
	ecrtypes.UpstreamRegistryDockerHub:               {"registry-1.docker.io", "index.docker.io"},
	ecrtypes.UpstreamRegistryGitLabContainerRegistry: {"registry.gitlab.com", "registry.gitlab.com"},
}

func (r PullThroughRule) validate() error {
	if _, ok := upstreams[r.Upstream]; !ok {
		return fmt.Errorf("upstream %q is not docker-hub or gitlab-container-registry", r.Upstream)
	}
	if r.Prefix == "" || strings.ContainsAny(r.Prefix, " :@") || strings.HasPrefix(r.Prefix, "/") {
		return fmt.Errorf("repository prefix %q is not a valid ECR repository prefix", r.Prefix)
	}
	if !strings.HasPrefix(r.CredentialARN, "arn:") || !strings.Contains(r.CredentialARN, ":secret:ecr-pullthroughcache/") {
		return fmt.Errorf("credential %q is not the ARN of a Secrets Manager secret named ecr-pullthroughcache/…", r.CredentialARN)
	}
	return nil
}

// input is the CreatePullThroughCacheRule request for r.
func (r PullThroughRule) input() *ecr.CreatePullThroughCacheRuleInput {
	return &ecr.CreatePullThroughCacheRuleInput{
		EcrRepositoryPrefix: aws.String(r.Prefix),
		UpstreamRegistryUrl: aws.String(upstreams[r.Upstream].url),
		UpstreamRegistry:    r.Upstream,
		CredentialArn:       aws.String(r.CredentialARN),
	}
}

// PullThroughMap returns jobimage.Resolver.PullThrough for rules on the
// ECR registry host: the job-visible upstream host → "<registry>/<prefix>".
func PullThroughMap(registry string, rules []PullThroughRule) map[string]string {
	m := map[string]string{}
	for _, r := range rules {
		if u, ok := upstreams[r.Upstream]; ok {
			m[u.host] = registry + "/" + r.Prefix
		}
	}
	return m
}

// DescribePullThroughRules returns the registry's pull-through cache rules
// for the upstreams this package knows.
func DescribePullThroughRules(ctx context.Context, c ECRAPI) ([]PullThroughRule, error) {
	var rules []PullThroughRule
	p := ecr.NewDescribePullThroughCacheRulesPaginator(c, &ecr.DescribePullThroughCacheRulesInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("imagefn: describe pull-through cache rules: %w", err)
		}
		for _, r := range page.PullThroughCacheRules {
			if _, ok := upstreams[r.UpstreamRegistry]; !ok {
				continue
			}
			rules = append(rules, PullThroughRule{Upstream: r.UpstreamRegistry,
				Prefix: aws.ToString(r.EcrRepositoryPrefix), CredentialARN: aws.ToString(r.CredentialArn)})
		}
	}
	return rules, nil
}

// EnsurePullThroughRules creates the rules the registry lacks. A rule whose
// prefix exists for another upstream is an error; nothing is changed then.
func EnsurePullThroughRules(ctx context.Context, c ECRAPI, rules []PullThroughRule) error {
	for _, r := range rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("imagefn: pull-through cache rule %s: %w", r.Prefix, err)
		}
	}
	have, err := DescribePullThroughRules(ctx, c)
	if err != nil {
		return err
	}
	existing := map[string]PullThroughRule{}
	for _, r := range have {
		existing[r.Prefix] = r
	}
	var missing []PullThroughRule
	for _, r := range rules {
		e, ok := existing[r.Prefix]
		switch {
		case !ok:
			missing = append(missing, r)
		case e.Upstream != r.Upstream:
			return fmt.Errorf("imagefn: pull-through cache rule %s: the prefix already caches %s, not %s", r.Prefix, e.Upstream, r.Upstream)
		}
	}
	for _, r := range missing {
		if _, err := c.CreatePullThroughCacheRule(ctx, r.input()); err != nil {
			return fmt.Errorf("imagefn: create pull-through cache rule %s for %s: %w", r.Prefix, r.Upstream, err)
		}
	}
	return nil
}
