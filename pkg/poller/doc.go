// Package poller owns taking jobs from GitLab for one runner: it keeps the
// runner's token fresh (rotation before expiry), respects the runner's
// concurrency with leased slots, asks GitLab for jobs within a short window
// (or the runner's opt-in long-poll window), claims each job assignment
// once (a job GitLab re-queued and offered again with a new job token is
// claimed again), pre-signs the job's cache URLs (one URL per key of the
// job's gitlab.CachePlan) and hands the job to the executor function of the
// runner's runtime as a dispatch.Event. Every path out ends with the job
// handed over or failed in GitLab, and with the runner's health recorded.
// A poll that finds every slot held, or stops before GitLab said it had no
// more jobs, records the runner's poll demand, which the next freed slot
// takes to poll again (see runner.JobStore.TakePollDemand for why no
// freed slot is missed).
//
// It also defines the feature map advertised to GitLab (Features).
package poller
