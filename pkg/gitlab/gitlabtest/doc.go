// Package gitlabtest owns an in-process fake GitLab for tests: the runner
// API (registration and lifecycle, job request, job update, trace, artifacts)
// and git over real smart HTTP, served by an httptest server on 127.0.0.1.
//
// It follows the protocol reference (docs/gitlab-runner-api.md) closely
// enough that a client which passes against it behaves like gitlab-runner
// against a real instance, and it records every protocol violation it sees
// so that tests can assert a client never misbehaves:
//
//	srv := gitlabtest.New(t)                      // closed by t.Cleanup
//	proj := srv.CreateProject("group/demo", map[string]string{"README.md": "hi\n"})
//	r := srv.CreateRunner(gitlabtest.RunnerOptions{Tags: []string{"lambda"}})
//	job := srv.EnqueueJob(proj, gitlabtest.JobSpec{Script: []string{"make test"}, Tags: []string{"lambda"}})
//	// ... run the code under test against srv.URL() with r.Token ...
//	got := srv.WaitJob(ctx, job.ID)                // final snapshot: State, Trace, Artifacts, Updates
//	srv.AssertNoViolations(t)
//
// Behaviour that tests steer:
//
//   - Config (through Option values given to New): TLS, long polling,
//     token expiry, registration tokens disabled, the two-phase ack window,
//     trace update intervals, trace and artifact size limits, how many
//     times a final update is answered 202 before 200.
//   - Server methods at run time: CancelJob, SetRunnerPaused,
//     ExpireRunnerToken, WatchJob, TruncateTrace (forces a 416 resume) and
//     Inject (replace the next responses of an endpoint by 429/5xx/409/413
//     with Retry-After or RateLimit-ResetTime).
//   - Projects (CreateProject) are real git repositories served by git
//     http-backend: Commit, Branch, Tag and AddSubmodule change them; a
//     job's refs/pipelines/<pipeline id> is created when it is enqueued.
//     Clones need HTTP basic auth gitlab-ci-token:<token of a job running
//     on the project> (or on a project allowed by AllowJobTokenFrom).
//
// It also serves what jobs call besides the runner API: the Releases API
// (POST and GET /api/v4/projects/:id/releases with a job token, see
// Releases and AddMilestone) and the Git LFS batch API with its object
// downloads (CommitLFS stores a project's LFS objects).
//
// Besides the runner API it serves what the product's web side needs from
// GitLab: GET /api/v4/user and GET /api/v4/projects for users made with
// AddUser (PAT or OAuth bearer token), and job webhooks (AddJobHook) that
// announce every job status change.
//
// Endpoints are named by their route pattern (the Endpoint* constants), the
// same names Inject and RequestsTo take.
//
// Every method is safe for concurrent use. Helpers that build state (projects,
// runners, jobs) fail the test through the testing.TB given to New.
package gitlabtest
