package seal

import (
	"errors"

	"gitlab-serverless-runner/pkg/envvar"
)

// FromEnv returns the Keyring of the keys in TOKEN_SEALING_KEY, read
// through lookup (os.LookupEnv when nil; a function's main passes one
// that resolves Secrets Manager references, see package secrets).
func FromEnv(lookup envvar.Lookup) (*Keyring, error) {
	spec := envvar.New(lookup).String("TOKEN_SEALING_KEY")
	if spec == "" {
		return nil, errors.New("seal: TOKEN_SEALING_KEY is not set")
	}
	return ParseKeys(spec)
}
