package secrets_test

import (
	"context"
	"fmt"

	"gitlab-serverless-runner/pkg/secrets"
)

// A value that names no secret is returned as it is, without calling AWS:
// local development sets the secrets themselves.
func ExampleResolve() {
	v, err := secrets.Resolve(context.Background(), "a-local-development-key")
	fmt.Println(v, err)
	// Output: a-local-development-key <nil>
}
