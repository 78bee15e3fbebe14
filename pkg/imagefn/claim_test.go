package imagefn_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

// A preparation that died while creating leaves a claim: others wait while
// its lease runs, then take it over and create the function.
func TestEnsureWaitsForALiveClaimAndTakesOverADeadOne(t *testing.T) {
	e := newEnv(t)
	v := variant('9', jobimage.X8664)
	now := e.clock.Now()
	attr := func(s string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberS{Value: s} }
	num := func(t time.Time) ddbtypes.AttributeValue {
		return &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(t.UnixNano(), 10)}
	}
	_, err := dynamotest.Start(t).Client().PutItem(context.Background(), &dynamodb.PutItemInput{
		TableName: aws.String(e.cfg.Table),
		Item: map[string]ddbtypes.AttributeValue{
			imagefn.KeyAttribute: attr(v.Key()), "name": attr(v.FunctionName(e.cfg.FunctionPrefix)),
			"image": attr(imageURI), "base": attr(v.Base), "arch": attr(string(v.Arch)), "executor": attr(v.Executor),
			"memory_mb": &ddbtypes.AttributeValueMemberN{Value: "2048"}, "storage_mb": &ddbtypes.AttributeValueMemberN{Value: "4096"},
			"state": attr(imagefn.StateCreating), "owner": attr("a-preparation-that-died"),
			"lease_until": num(now.Add(imagefn.DefaultCreateLease)), "created_at": num(now), "last_used": num(now),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := e.functions(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = f.Ensure(ctx, v, imageURI)
	if err == nil || !strings.Contains(err.Error(), "creating by another preparation") {
		t.Fatalf("Ensure during a live claim = %v; want it to wait until its context ends", err)
	}
	if n := len(e.wire.find("POST", "/2015-03-31/functions")); n != 0 {
		t.Errorf("%d CreateFunction requests during another's claim", n)
	}
	if _, found, _ := f.Lookup(context.Background(), v); found {
		t.Error("Lookup found a function still being created")
	}

	e.clock.Add(imagefn.DefaultCreateLease + time.Second)
	fn, err := f.Ensure(context.Background(), v, imageURI)
	if err != nil {
		t.Fatalf("Ensure after the lease ran out: %v", err)
	}
	if fn.State != imagefn.StateActive || fn.ARN == "" {
		t.Errorf("Ensure = %+v; want an active function", fn)
	}
}
