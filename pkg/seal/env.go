package seal

import (
	"errors"
	"strconv"

	"gitlab-serverless-runner/pkg/envvar"
)

// FromEnv returns the Sealer of the keys in TOKEN_SEALING_KEY, read
// through lookup (os.LookupEnv when nil; a function's main passes one
// that resolves Secrets Manager references, see package secrets).
func FromEnv(lookup envvar.Lookup) (*Sealer, error) {
	spec := envvar.New(lookup).String("TOKEN_SEALING_KEY")
	if spec == "" {
		return nil, errors.New("seal: TOKEN_SEALING_KEY is not set")
	}
	return ParseKeys(spec)
}

// JobToken is the id a job token is sealed for (Sealer.Seal's runnerID):
// "job-token/<runner id>/<job id>", which no runner id can be, so a sealed
// job token never opens as a runner token, nor one job's as another's.
func JobToken(runnerID string, jobID int64) string {
	return "job-token/" + runnerID + "/" + strconv.FormatInt(jobID, 10)
}
