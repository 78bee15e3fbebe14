// The executor for managed runtimes ships in the executor layer and starts
// through AWS_LAMBDA_EXEC_WRAPPER=/opt/gsr/exec-wrapper, replacing this
// runtime's start-up. This handler only runs when that did not happen; it
// fails every invocation with a message that says why, so the finisher fails
// the job in GitLab instead of leaving it running.
export const handler = async () => {
  throw new Error(
    "gitlab-serverless-runner: the executor did not start: the function " +
      "needs the executor layer and AWS_LAMBDA_EXEC_WRAPPER=/opt/gsr/exec-wrapper",
  );
};
