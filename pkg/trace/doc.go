// Package trace owns a job's log on its way to GitLab: masking of secrets
// (Masker), the runner-side output limit (Limit), the on-disk bytes that form
// the trace with their CRC-32 and size (Buffer), the composition of the three
// for the executor, with gitlab-runner's per-line timestamps when a job asks
// for them (Writer), section and colour formatting, and the upload
// lifecycle (Uploader): incremental PATCHes while the job runs, touch
// updates, cancellation detection and exactly one final update.
package trace
