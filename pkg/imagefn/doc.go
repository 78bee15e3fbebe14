// Package imagefn owns the AWS control plane of image executor functions:
// the Lambda function made from a derived executor image (package jobimage)
// once per image digest, architecture, memory and ephemeral storage
// (a Variant), its record in DynamoDB, the deletion of functions unused for
// a number of days, and ECR credentials for go-containerregistry. The ECR
// pull-through cache rules are the template's (AWS::ECR::PullThroughCacheRule).
//
// # Callers
//
// The preparation function calls Functions.Touch to find an image's
// function and record its use in one write, Functions.Ensure after
// jobimage's Resolve and Derive when there is none, and, on its daily
// schedule, Functions.SweepUnused.
//
// # One function per variant
//
// The records table (CreateTable) holds one item per variant, written only
// with conditional writes: the first preparation of a variant claims the
// item ("creating", with a lease), creates the function and marks it
// "active"; a concurrent preparation of the same variant finds the claim
// and waits for it (or takes it over once its lease ran out, when its
// holder died). Function names are derived from the variant, so a function
// left by a holder that died is found and reused rather than duplicated.
// The sweeper marks an item "deleting" (conditionally on its still being
// unused) before it deletes the function, so a concurrent Touch or Ensure
// either keeps the function or waits for it to be gone and makes it anew.
//
// # Errors and concurrency
//
// Errors wrap the AWS SDK's with %w and say which function or variant
// failed; ErrNotActive says a variant has no usable function. A Functions
// is safe for concurrent use.
package imagefn
