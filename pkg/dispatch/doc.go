// Package dispatch owns the contract between the product's functions: what
// one function hands the next, in one type per hop.
//
//	scheduler, web (webhook) ──Poll──▶ poller
//	poller ──Event (job, cache URLs, Dispatch)──▶ executor
//	executor ──Result──▶ Lambda destination record ──▶ finisher
//
// The finisher reads the Event back from the destination record's request
// payload (its Dispatch says which job and slot to close) and the Result
// from its response payload. Every field of every type is declared here
// once; producers and consumers share the same Go types, so they cannot
// drift. The package also decodes and validates events, fetches an event
// passed by reference, and fails a job in GitLab from outside its
// executor. It imports only pkg/gitlab.
package dispatch
