// Package poller owns taking jobs from GitLab for one runner: it keeps the
// runner's token fresh (rotation before expiry), respects the runner's
// concurrency with leased slots, asks GitLab for jobs within a short window
// (or the runner's opt-in long-poll window), claims each job assignment
// once (a job GitLab re-queued and offered again with a new job token is
// claimed again), pre-signs the job's cache URLs (one URL per key of the
// job's gitlab.CachePlan) and hands the job to the executor function of the
// runner's runtime as a dispatch.Event. Every path out ends with the job
// handed over or failed in GitLab, and with the runner's health recorded.
//
// It also defines the feature map advertised to GitLab (Features).
package poller
