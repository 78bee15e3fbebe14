package jobimage

import (
	"context"
	"time"
)

// Preparer resolves a job's image and derives its executor image: the whole
// registry side of preparing an image function. It is safe for concurrent
// use once its Resolver and Deriver are configured.
type Preparer struct {
	Resolver *Resolver
	Deriver  *Deriver
}

// Prepared is the outcome of Prepare, with the time each step took.
type Prepared struct {
	Resolved *Resolved
	Derived  *Derived
	// ResolveTime covers Resolve; DeriveTime and PushTime are
	// Derived's.
	ResolveTime, DeriveTime, PushTime time.Duration
}

// Prepare resolves ref for arch with the job's creds and derives its
// executor image with executor. Errors are Resolve's and Derive's.
func (p *Preparer) Prepare(ctx context.Context, ref string, arch Arch, creds *DockerAuth, executor []byte) (*Prepared, error) {
	start := time.Now()
	res, err := p.Resolver.Resolve(ctx, ref, arch, creds)
	if err != nil {
		return nil, err
	}
	out := &Prepared{Resolved: res, ResolveTime: time.Since(start)}
	d, err := p.Deriver.Derive(ctx, res, executor)
	if err != nil {
		return nil, err
	}
	out.Derived, out.DeriveTime, out.PushTime = d, d.DeriveTime, d.PushTime
	return out, nil
}
