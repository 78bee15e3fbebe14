package registrytest

import "github.com/google/go-containerregistry/pkg/authn"

func (b basic) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.pass}, nil
}
