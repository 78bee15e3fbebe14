package jobimage

import (
	"errors"
	"fmt"
)

// The kinds of failure Resolve and Derive report. Match them with errors.Is;
// the *Error that carries one says which image and what to do.
var (
	// ErrBadReference: the reference is not a valid image reference.
	ErrBadReference = errors.New("invalid image reference")
	// ErrNotFound: the registry has no such repository, tag or digest.
	ErrNotFound = errors.New("image not found")
	// ErrNoPlatform: the image has no variant for the architecture.
	ErrNoPlatform = errors.New("image has no variant for the architecture")
	// ErrUnauthorized: the registry refused the credentials (or their
	// absence).
	ErrUnauthorized = errors.New("not authorized to read the image")
	// ErrTooLarge: the image is over Lambda's container image size limit.
	ErrTooLarge = errors.New("image over Lambda's size limit")
	// ErrUnreachable: the registry did not answer.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrCredentialHelper: DOCKER_AUTH_CONFIG names a credential helper
	// for the registry; helpers are programs on a runner's machine and
	// cannot run here.
	ErrCredentialHelper = errors.New("credential helpers cannot run here")
	// ErrForbiddenRegistry: the registry's address is not a public one.
	ErrForbiddenRegistry = errors.New("registry address not allowed")
	// ErrUnsupported: the manifest is of a kind Lambda cannot run (Docker
	// schema 1, not an image).
	ErrUnsupported = errors.New("unsupported image")
	// ErrMountRefused: the target registry would not mount a base layer
	// and copying was not allowed.
	ErrMountRefused = errors.New("registry refused to mount a base layer")
)

// Error is a failure to resolve or derive one image. Its message names the
// image and says what happened in words fit for a job's trace; it never
// contains a credential. Err, when set, is the underlying cause for logs.
type Error struct {
	// Ref is the image reference as the job wrote it.
	Ref string
	// Kind is one of the Err* values above.
	Kind error
	// Detail says what happened and, where it can, what to do.
	Detail string
	// Platforms lists the platforms the image offers (ErrNoPlatform only).
	Platforms []string
	// Err is the underlying error, if any.
	Err error
}

// Error returns "image REF: DETAIL".
func (e *Error) Error() string {
	return fmt.Sprintf("image %s: %s", e.Ref, e.Detail)
}

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }
