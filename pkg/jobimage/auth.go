package jobimage

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// DockerAuth holds the registry credentials of one job: the JSON GitLab users
// put in the DOCKER_AUTH_CONFIG variable, plus any the runner adds (the job's
// CI_REGISTRY user and password for its own GitLab registry). The zero value
// and nil hold none (anonymous access everywhere).
//
// Only the "auths" section can be used: each entry gives either "auth"
// (base64 of user:password) or "username" and "password" (or an
// "identitytoken"/"registrytoken"). "credsStore" and "credHelpers" name
// programs on a runner's machine (docker-credential-…); none can run in
// Lambda. A registry named in "credHelpers" without an "auths" entry is an
// ErrCredentialHelper when a job's image is on it; "credsStore" is only
// mentioned in the message when the registry then refuses anonymous access.
type DockerAuth struct {
	auths       map[string]authn.AuthConfig // by registry host
	credHelpers map[string]string           // registry host → helper name
	credsStore  string
}

// dockerConfig is the JSON of DOCKER_AUTH_CONFIG (a Docker config.json).
type dockerConfig struct {
	Auths       map[string]dockerAuthEntry `json:"auths"`
	CredHelpers map[string]string          `json:"credHelpers"`
	CredsStore  string                     `json:"credsStore"`
}

type dockerAuthEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// ParseDockerAuthConfig parses the value of DOCKER_AUTH_CONFIG. An empty
// value holds no credentials. The error never quotes the value, which holds
// secrets.
func ParseDockerAuthConfig(s string) (*DockerAuth, error) {
	a := &DockerAuth{auths: map[string]authn.AuthConfig{}, credHelpers: map[string]string{}}
	if strings.TrimSpace(s) == "" {
		return a, nil
	}
	var cfg dockerConfig
	if err := json.Unmarshal([]byte(s), &cfg); err != nil {
		// json's messages quote offsets and types, never the input.
		return nil, fmt.Errorf("jobimage: parse DOCKER_AUTH_CONFIG: not a Docker config JSON object: %w", err)
	}
	for key, e := range cfg.Auths {
		host, err := registryHost(key)
		if err != nil {
			return nil, fmt.Errorf("jobimage: parse DOCKER_AUTH_CONFIG: auths key %q: %w", key, err)
		}
		ac := authn.AuthConfig{
			Username: e.Username, Password: e.Password,
			IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken,
		}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Auth))
			if err != nil {
				return nil, fmt.Errorf("jobimage: parse DOCKER_AUTH_CONFIG: auths %q: \"auth\" is not base64", key)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("jobimage: parse DOCKER_AUTH_CONFIG: auths %q: \"auth\" is not base64 of user:password", key)
			}
			ac.Username, ac.Password = user, pass
		}
		if ac == (authn.AuthConfig{}) {
			return nil, fmt.Errorf("jobimage: parse DOCKER_AUTH_CONFIG: auths %q has no credentials (want \"auth\" or \"username\" and \"password\")", key)
		}
		a.auths[host] = ac
	}
	for key, helper := range cfg.CredHelpers {
		host, err := registryHost(key)
		if err != nil {
			return nil, fmt.Errorf("jobimage: parse DOCKER_AUTH_CONFIG: credHelpers key %q: %w", key, err)
		}
		a.credHelpers[host] = helper
	}
	a.credsStore = cfg.CredsStore
	return a, nil
}

// AddBasicUnlessSet adds a user and password for registry unless a has
// credentials for that registry already: the job's CI_REGISTRY_USER and
// CI_REGISTRY_PASSWORD for CI_REGISTRY, which DOCKER_AUTH_CONFIG's own
// entry for the registry overrides, as gitlab-runner orders them. Registry
// names are compared as hosts ("docker.io" is "index.docker.io"). The
// error says registry is not a registry address; nothing is added then.
func (a *DockerAuth) AddBasicUnlessSet(registry, user, password string) error {
	host, err := registryHost(registry)
	if err != nil {
		return fmt.Errorf("jobimage: add credentials for %q: %w", registry, err)
	}
	if _, ok := a.auths[host]; ok {
		return nil
	}
	if a.auths == nil {
		a.auths = map[string]authn.AuthConfig{}
	}
	a.auths[host] = authn.AuthConfig{Username: user, Password: password}
	return nil
}

// Variables are a job's CI/CD variables; gitlab.Variables implements it.
type Variables interface {
	Get(key string) string
}

// JobCredentials returns a job's registry credentials from its variables:
// DOCKER_AUTH_CONFIG, and CI_REGISTRY_USER and CI_REGISTRY_PASSWORD for
// CI_REGISTRY unless DOCKER_AUTH_CONFIG has that registry
// (AddBasicUnlessSet). A CI_REGISTRY that is not a registry address only
// loses those credentials. The error is ParseDockerAuthConfig's.
func JobCredentials(vars Variables) (*DockerAuth, error) {
	a, err := ParseDockerAuthConfig(vars.Get("DOCKER_AUTH_CONFIG"))
	if err != nil {
		return nil, err
	}
	reg, user, pass := vars.Get("CI_REGISTRY"), vars.Get("CI_REGISTRY_USER"), vars.Get("CI_REGISTRY_PASSWORD")
	if reg != "" && user != "" && pass != "" {
		_ = a.AddBasicUnlessSet(reg, user, pass)
	}
	return a, nil
}

// Registries returns the registry hosts that have credentials, sorted.
func (a *DockerAuth) Registries() []string {
	if a == nil {
		return nil
	}
	hosts := make([]string, 0, len(a.auths))
	for h := range a.auths {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return hosts
}

// authenticator returns the credentials for registry host, anonymous when
// there are none, or an ErrCredentialHelper when only a credential helper
// is named for it.
func (a *DockerAuth) authenticator(ref, host string) (authn.Authenticator, error) {
	if a == nil {
		return authn.Anonymous, nil
	}
	if ac, ok := a.auths[host]; ok {
		return authn.FromConfig(ac), nil
	}
	if helper, ok := a.credHelpers[host]; ok {
		return nil, &Error{Ref: ref, Kind: ErrCredentialHelper, Detail: fmt.Sprintf(
			"DOCKER_AUTH_CONFIG names the credential helper %q for %s; credential helpers are programs on a runner's machine and cannot run on Lambda: put the registry's credentials in \"auths\" instead",
			helper, host)}
	}
	return authn.Anonymous, nil
}

// storeHint is appended to an unauthorized error when credsStore is set.
func (a *DockerAuth) storeHint() string {
	if a == nil || a.credsStore == "" {
		return ""
	}
	return fmt.Sprintf(" (DOCKER_AUTH_CONFIG names the credential store %q; credential stores are programs on a runner's machine and cannot run on Lambda: put the registry's credentials in \"auths\")", a.credsStore)
}

// registryHost normalises an "auths" key to the registry host go-containerregistry
// uses: "https://index.docker.io/v1/", "docker.io" and
// "registry-1.docker.io" all become "index.docker.io"; a scheme and path are
// dropped.
func registryHost(key string) (string, error) {
	k := strings.TrimSpace(key)
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
	}
	if i := strings.IndexByte(k, '/'); i >= 0 {
		k = k[:i]
	}
	if k == "" {
		return "", fmt.Errorf("no registry host")
	}
	reg, err := name.NewRegistry(k)
	if err != nil {
		return "", err
	}
	if reg.RegistryStr() == "registry-1.docker.io" {
		return name.DefaultRegistry, nil
	}
	return reg.RegistryStr(), nil
}
