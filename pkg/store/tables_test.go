package store_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestCreateTablesMatchesSpecs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	if err := s.CreateTables(ctx); err != nil {
		t.Fatalf("CreateTables a second time: %v", err)
	}
	client := dynamotest.Start(t).Client()

	for _, spec := range store.Tables() {
		t.Run(spec.Suffix, func(t *testing.T) {
			name := s.TableNames().Name(spec.Suffix)
			out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
			if err != nil {
				t.Fatalf("DescribeTable(%s): %v", name, err)
			}
			d := out.Table
			attrTypes := map[string]string{}
			for _, a := range d.AttributeDefinitions {
				attrTypes[aws.ToString(a.AttributeName)] = string(a.AttributeType)
			}
			checkKeys(t, "table", d.KeySchema, attrTypes, spec.HashKey, spec.RangeKey)
			if got, want := len(d.GlobalSecondaryIndexes), len(spec.GlobalIndexes); got != want {
				t.Fatalf("%d global indexes, want %d", got, want)
			}
			for i, idx := range spec.GlobalIndexes {
				gsi := d.GlobalSecondaryIndexes[i]
				if aws.ToString(gsi.IndexName) != idx.Name {
					t.Errorf("index %d is %q, want %q", i, aws.ToString(gsi.IndexName), idx.Name)
				}
				checkKeys(t, idx.Name, gsi.KeySchema, attrTypes, idx.HashKey, idx.RangeKey)
			}
			ttl, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
			if err != nil {
				t.Fatalf("DescribeTimeToLive: %v", err)
			}
			got := ""
			if ttl.TimeToLiveDescription != nil && ttl.TimeToLiveDescription.TimeToLiveStatus == "ENABLED" {
				got = aws.ToString(ttl.TimeToLiveDescription.AttributeName)
			}
			if got != spec.TTLAttribute {
				t.Errorf("TTL attribute = %q, want %q", got, spec.TTLAttribute)
			}
		})
	}
}

func checkKeys(t *testing.T, what string, ks []types.KeySchemaElement, attrTypes map[string]string, hash, rng store.Attribute) {
	t.Helper()
	want := []store.Attribute{hash}
	if rng.Name != "" {
		want = append(want, rng)
	}
	if len(ks) != len(want) {
		t.Fatalf("%s has %d key attributes, want %d", what, len(ks), len(want))
	}
	for i, k := range ks {
		name := aws.ToString(k.AttributeName)
		if name != want[i].Name || attrTypes[name] != want[i].Type {
			t.Errorf("%s key %d = %s (%s), want %s (%s)", what, i, name, attrTypes[name], want[i].Name, want[i].Type)
		}
		wantType := types.KeyTypeHash
		if i == 1 {
			wantType = types.KeyTypeRange
		}
		if k.KeyType != wantType {
			t.Errorf("%s key %s is %s, want %s", what, name, k.KeyType, wantType)
		}
	}
}

func TestUpsertUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	u, err := s.UpsertUser(ctx, "https://gitlab.example.com|17", "alice")
	if err != nil {
		t.Fatalf("UpsertUser: %v", err)
	}
	if u.Username != "alice" || u.RunnerCount != 0 || u.CreatedAt.IsZero() {
		t.Errorf("new user = %+v, want alice with 0 runners and a creation time", u)
	}
	mustCreate(t, s, newRunner(u.Sub, "r"))
	again, err := s.UpsertUser(ctx, u.Sub, "alice2")
	if err != nil {
		t.Fatalf("UpsertUser again: %v", err)
	}
	if again.Username != "alice2" || again.RunnerCount != 1 || !again.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("user after second login = %+v, want alice2 with 1 runner created at %v", again, u.CreatedAt)
	}
	_, err = s.GetUser(ctx, "nobody")
	wantCode(t, "GetUser(unknown)", err, runner.ENOTFOUND)
}

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	tests := []struct {
		name string
		env  map[string]string
		want store.Config
	}{
		{"defaults", nil, store.Config{Tables: store.Prefixed("gsr-")}},
		{"prefix and one name", map[string]string{"TABLE_PREFIX": "prod-", "JOBS_TABLE": "jobs-x", "DYNAMODB_ENDPOINT": "http://127.0.0.1:8000"},
			store.Config{Tables: store.TableNames{Users: "prod-users", Runners: "prod-runners", Jobs: "jobs-x", Slots: "prod-slots"}, Endpoint: "http://127.0.0.1:8000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := store.ConfigFromEnv(env(tt.env))
			if err != nil || got.Tables != tt.want.Tables || got.Endpoint != tt.want.Endpoint {
				t.Errorf("ConfigFromEnv() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
