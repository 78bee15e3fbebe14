package mototest

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// lambdaTrust lets Lambda assume a role.
const lambdaTrust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// CreateRole creates an IAM role Lambda may assume (moto's CreateFunction
// checks that the execution role exists) and returns its ARN. It speaks
// IAM's query protocol directly, so tests need no IAM client module; a
// role that exists already is fine.
func (s *Server) CreateRole(t testing.TB, name string) string {
	t.Helper()
	form := url.Values{"Action": {"CreateRole"}, "Version": {"2010-05-08"}, "RoleName": {name},
		"AssumeRolePolicyDocument": {lambdaTrust}}
	req, err := http.NewRequest(http.MethodPost, s.Endpoint+"/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// moto reads the service and region from the credential scope.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDMOTOTEST/20260101/"+Region+
		"/iam/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mototest: create role %s: %v", name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && !strings.Contains(string(body), "EntityAlreadyExists") {
		t.Fatalf("mototest: create role %s: HTTP %d: %s", name, resp.StatusCode, body)
	}
	return "arn:aws:iam::" + AccountID + ":role/" + name
}
