// Package jobimage owns turning a job's `image:` into an image Lambda can run:
// resolving the reference a job writes (`golang:1.23`,
// `registry.gitlab.com/group/proj/img:tag`, `host:5000/x@sha256:…`) to the
// digest of one image manifest for the executor's architecture, and deriving
// from it the executor image: the job's image plus one layer holding the
// executor binary as its entrypoint, pushed to a target repository by
// registry operations only (base layers are mounted across repositories,
// never downloaded and uploaded again).
//
// # Callers
//
// The preparation function (package preparer) calls Resolve, then Derive
// when the image has no executor function yet; package imagefn then
// creates the function from Derived.Image. Local mode (package localimage)
// calls Resolve to find the manifest to unpack. Nothing here talks to AWS: registry
// credentials for the deployment's ECR registry arrive as an
// authn.Authenticator (see imagefn.ECRAuth).
//
// # Where images come from
//
// References to a registry named in Resolver.PullThrough (Docker Hub and
// GitLab's registry in a deployment) are read through that registry's ECR
// pull-through cache, with the deployment's credentials. Before it reads the
// cache, Resolve asks the upstream registry, with the job's own credentials
// (anonymous if it has none), for the manifest's digest: the cache's
// credentials never give a job an image it could not read itself, and a tag
// always means what upstream says now. Every other registry is reached
// directly with the job's credentials from DOCKER_AUTH_CONFIG
// (ParseDockerAuthConfig).
//
// Registries on loopback, link-local, private or otherwise non-public
// addresses are refused unless Resolver.AllowPrivateRegistries is set (tests
// and local mode): a job's image reference must not make the preparation
// function reach the Lambda Runtime API, the metadata service or the VPC.
//
// # Errors
//
// Every failure a job's author can cause or fix is an *Error whose message
// is fit for the job's trace (it never contains a credential) and which
// matches one of ErrBadReference, ErrNotFound, ErrNoPlatform,
// ErrUnauthorized, ErrTooLarge, ErrUnreachable, ErrCredentialHelper,
// ErrForbiddenRegistry, ErrUnsupported or ErrMountRefused with errors.Is.
//
// # Concurrency
//
// A Resolver and a Deriver are safe for concurrent use once configured.
// Two Derive calls for the same (base digest, executor digest, architecture)
// produce the same tag and digest, so concurrent preparations of one image
// agree; the second finds the tag already pushed and uploads nothing.
package jobimage
