package mototest_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"gitlab-serverless-runner/pkg/mototest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

func TestServerAnswersLambda(t *testing.T) {
	srv := mototest.Start(t)
	if again := mototest.Start(t); again != srv {
		t.Error("second Start returned another server")
	}
	out, err := lambda.NewFromConfig(srv.Config()).ListFunctions(context.Background(), &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatalf("ListFunctions: %v", err)
	}
	_ = out
}

func TestBinaryHonoursTheVariable(t *testing.T) {
	t.Setenv(mototest.BinaryEnv, "/nonexistent/moto_server")
	if _, err := mototest.Binary(); err == nil {
		t.Error("Binary accepted a missing file")
	}
}
