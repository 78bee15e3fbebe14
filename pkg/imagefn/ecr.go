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
	"github.com/google/go-containerregistry/pkg/authn"
)

// ECRAPI is the part of the ECR client this package uses; *ecr.Client
// implements it.
type ECRAPI interface {
	GetAuthorizationToken(context.Context, *ecr.GetAuthorizationTokenInput, ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
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
