// Command echo is a minimal Lambda function used by lambdatest's own tests:
// it answers each event with the event, its invocation count and selected
// environment variables.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

var count int

func handle(ctx context.Context, ev map[string]any) (map[string]any, error) {
	count++
	if ev["fail"] == true {
		return nil, errors.New("asked to fail")
	}
	return map[string]any{"event": ev, "count": count, "key": os.Getenv("AWS_ACCESS_KEY_ID"), "custom": os.Getenv("CUSTOM")}, nil
}

func main() {
	lambda.Start(handle)
}
