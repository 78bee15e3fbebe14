// Package preparer owns the preparation function: the step between the
// poller and the executor for a job with `image:`. The poller hands such a
// job here, with the executor event it would have sent a runtime's
// executor, and the preparer makes the job's image runnable on Lambda and
// hands the job on:
//
//  1. it chooses the function's compute from the job's LAMBDA_ARCH,
//     LAMBDA_MEMORY and LAMBDA_EPHEMERAL_STORAGE within the operator's
//     Bounds;
//  2. it resolves the image for that architecture (jobimage.Resolver, with
//     the job's DOCKER_AUTH_CONFIG and CI_REGISTRY credentials);
//  3. when no function exists yet for the image, the architecture, the
//     memory, the storage and this executor build (an imagefn.Variant), it
//     derives the executor image (jobimage.Deriver: the job's image plus
//     the executor as entrypoint), pushes it, and creates the function
//     (imagefn.Functions.Ensure, which makes two preparations of one
//     variant create one function);
//  4. it invokes that function with the job's event, exactly as the poller
//     invokes a runtime's executor: asynchronously, with a tenant id of its
//     own, the dispatch data kept, so that the finisher closes the job as
//     any other. The event now carries what the preparation did and how
//     long each step took (dispatch.Image), which the executor shows as the
//     trace's first section.
//
// A preparation that fails fails the job in GitLab with one trace line
// that says why (dispatch.FailJob; image_pull_failure for an image that
// cannot be read, runner_configuration_error for compute the runner does
// not allow), records the job failed and frees its concurrency slot, as the
// poller does for a job it cannot hand over. While it prepares a job taken
// with two-phase commit, it keeps the job's assignment alive in GitLab
// (PUT state=pending); the executor accepts the job when it starts.
//
// The preparation runs in a function of its own, never in the poller's
// time budget; it ends, at the latest, Config.Margin before its
// invocation's deadline, failing the job rather than leaving it to the
// finisher.
package preparer
