// Package executor owns running one GitLab CI job end to end inside an AWS
// Lambda invocation, the way gitlab-runner's shell executor runs it: it reads
// the executor's event (the job payload the poller received, plus cache URLs
// and runner settings), accepts the job when the poller used two-phase
// commit, prepares a clean sandbox, checks out the sources, restores caches,
// downloads dependencies' artifacts, runs the script steps and after_script,
// saves caches, uploads artifacts, streams the masked trace with sections
// and reports the final state, all against a deadline that ends before
// Lambda's own. While the job runs it checks the job's status in GitLab
// every few seconds (StatusInterval), so a cancel stops even a job that
// prints nothing within seconds, whatever trace interval GitLab asks for.
//
// The building blocks live elsewhere: pkg/gitlab (the API client),
// pkg/trace (masking, limit, buffer, uploader), pkg/checkout (git),
// pkg/archive (artifacts and caches), pkg/shell (scripts) and pkg/sandbox
// (clean-up between jobs). This package decides their order, the job's
// deadline and failure reasons, and what the trace says.
package executor
