package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

// TestTokensAreNotStoredInClear creates runners from a glrt- token and
// from a registration token, then reads every item of every table raw, as
// anyone with read access to the tables would: neither the runner tokens
// nor the registration token may appear. The registration token is used
// for exactly one registration.
func TestTokensAreNotStoredInClear(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")
	glr := e.gl.CreateRunner(gitlabtest.RunnerOptions{})
	created(t, ada.submit(http.MethodPost, "/runners", e.tokenForm(e.secret(glr.Token))))

	registration := e.secret(e.gl.RegistrationToken())
	form := e.tokenForm(registration)
	form.Set("mode", "registration")
	created(t, ada.submit(http.MethodPost, "/runners", form))
	if got := len(e.gl.RequestsTo(gitlabtest.EndpointRegisterRunner)); got != 1 {
		t.Errorf("registrations = %d, want 1", got)
	}

	rs := e.storedRunners("sub-ada")
	if len(rs) != 2 {
		t.Fatalf("stored runners = %d, want 2", len(rs))
	}
	secrets := map[string]string{"pasted runner token": glr.Token, "registration token": registration}
	for _, r := range rs {
		if snap, ok := e.gl.Runner(r.GitLabRunnerID); ok && snap.Token != glr.Token {
			secrets["registered runner token"] = e.secret(snap.Token)
		}
	}
	if len(secrets) != 3 {
		t.Fatalf("found the tokens %v, want the pasted, registration and registered ones", secrets)
	}

	db := dynamotest.Start(t).Client()
	names := e.store.TableNames()
	items := 0
	for _, table := range []string{names.Users, names.Runners, names.Jobs, names.Slots} {
		out, err := db.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		for _, item := range out.Items {
			items++
			for attr, v := range item {
				for what, s := range secrets {
					if strings.Contains(rawValue(v), s) {
						t.Errorf("table %s, attribute %s holds the %s in clear", table, attr, what)
					}
				}
			}
		}
	}
	if items < 3 { // one user, two runners
		t.Errorf("scanned %d items, want at least the user and both runners", items)
	}
}

// rawValue renders an attribute value as the bytes stored, binary values
// and nested ones included.
func rawValue(v types.AttributeValue) string {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberB:
		return string(v.Value)
	case *types.AttributeValueMemberN:
		return v.Value
	case *types.AttributeValueMemberSS:
		return strings.Join(v.Value, "\x00")
	case *types.AttributeValueMemberBS:
		var b strings.Builder
		for _, x := range v.Value {
			b.Write(x)
		}
		return b.String()
	case *types.AttributeValueMemberL:
		var b strings.Builder
		for _, x := range v.Value {
			b.WriteString(rawValue(x))
		}
		return b.String()
	case *types.AttributeValueMemberM:
		var b strings.Builder
		for k, x := range v.Value {
			b.WriteString(k + "\x00" + rawValue(x))
		}
		return b.String()
	}
	return ""
}
