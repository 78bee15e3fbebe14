package imagefn_test

import (
	"context"
	"testing"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/mototest"
)

func TestECRAuthFromMoto(t *testing.T) {
	moto := mototest.Start(t)
	creds, err := imagefn.ECRAuth(context.Background(), awsclients.ECR(moto.Config(), moto.Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := creds.Auth.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if ac.Username != "AWS" || ac.Password == "" {
		t.Errorf("credentials user %q, password set %v; want AWS and a token", ac.Username, ac.Password != "")
	}
	if want := mototest.AccountID + ".dkr.ecr." + mototest.Region + ".amazonaws.com"; creds.Registry != want {
		t.Errorf("Registry = %q; want %q", creds.Registry, want)
	}
	if creds.ExpiresAt.IsZero() {
		t.Error("ExpiresAt not set")
	}
}
