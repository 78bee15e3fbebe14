// Package poller owns taking jobs from GitLab for one runner: it keeps the
// runner's token fresh (rotation before expiry), respects the runner's
// concurrency with leased slots, asks GitLab for jobs within a short window
// (or the runner's opt-in long-poll window), claims each job assignment
// once (a job GitLab re-queued and offered again with a new job token is
// claimed again), pre-signs the job's cache URLs and hands the job to the
// executor function of the runner's runtime. Every path out ends with the job handed over or failed
// in GitLab, and with the runner's health recorded.
//
// It also defines what the executor is told: the executor event
// (ExecutorEvent, with the Dispatch the finisher reads back from the
// destination record) and the feature map advertised to GitLab (Features),
// and the way a job is failed from outside its executor (FailJob), which
// the finisher shares.
package poller
