package dispatch

import "time"

// Image is what the preparation function did for a job with `image:`
// before it handed the job to the image's executor function: the image it
// resolved, the function it runs on, and how long each step took. The
// executor shows it as the trace's first section (prepare_image) and reads
// the image's own entrypoint from it; nil for a job on a runtime's
// executor.
type Image struct {
	// Ref is the image as the job wrote it (job.image.name).
	Ref string `json:"ref"`
	// Digest is the digest of the image manifest run, for Arch; Platform
	// is its OS/architecture[/variant].
	Digest   string `json:"digest"`
	Platform string `json:"platform,omitempty"`
	// Arch, MemoryMB and StorageMB are the function's architecture,
	// memory and ephemeral storage, as the job's LAMBDA_ARCH, LAMBDA_MEMORY
	// and LAMBDA_EPHEMERAL_STORAGE chose them within the operator's
	// bounds.
	Arch      string `json:"arch"`
	MemoryMB  int    `json:"memory_mb"`
	StorageMB int    `json:"storage_mb"`
	// Executor is the image the function runs (the job's image plus the
	// executor), by digest; Function is the function's name.
	Executor string `json:"executor,omitempty"`
	Function string `json:"function,omitempty"`
	// Entrypoint is the image's own ENTRYPOINT (the executor replaces it
	// in the function): a job that sets no image:entrypoint runs its
	// scripts through it, as gitlab-runner does.
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Env is the image's own environment (ENV), for the trace and tools;
	// Lambda gives it to the function.
	Env []string `json:"env,omitempty"`
	// Prepared says the preparation made something new (a derived image
	// or a function); false when the image's function already existed.
	Prepared bool `json:"prepared,omitempty"`
	// Steps are the preparation's steps in order, with their times.
	Steps []Step `json:"steps,omitempty"`
	// Notes are lines for the trace (a variable out of bounds that was
	// ignored, say); never a secret.
	Notes []string `json:"notes,omitempty"`
}

// Step is one step of a preparation.
type Step struct {
	// Name is "resolve", "derive", "push", "function" or "lookup".
	Name string `json:"name"`
	// Detail says what the step found or did, for the trace.
	Detail string `json:"detail,omitempty"`
	// DurationMS is the step's time.
	DurationMS int64 `json:"duration_ms"`
}

// Took records a step that started at start.
func (im *Image) Took(name, detail string, start time.Time) {
	im.Steps = append(im.Steps, Step{Name: name, Detail: detail, DurationMS: time.Since(start).Milliseconds()})
}
