package preparer

import (
	"context"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"gitlab-serverless-runner/pkg/imagefn"
)

// ECRAuth authenticates to the account's ECR registry with a token from
// GetAuthorizationToken, fetched on first use and again an hour before it
// expires (tokens last 12 hours; a warm function outlives one). It is safe
// for concurrent use.
type ECRAuth struct {
	ECR imagefn.ECRAPI

	mu    sync.Mutex
	creds imagefn.ECRCredentials
}

var _ authn.Authenticator = (*ECRAuth)(nil)

// Authorization returns the registry credentials; the error never holds
// the token.
func (a *ECRAuth) Authorization() (*authn.AuthConfig, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.creds.Auth == nil || time.Until(a.creds.ExpiresAt) < time.Hour {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := imagefn.ECRAuth(ctx, a.ECR)
		if err != nil {
			return nil, err
		}
		a.creds = c
	}
	return a.creds.Auth.Authorization()
}
