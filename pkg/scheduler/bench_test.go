package scheduler_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/invoke/invoketest"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

// BenchmarkFanOut is one scheduler run over N enabled runners in DynamoDB
// Local with an invoker that only counts: the cost of the scan and the
// bounded fan-out, reported in seconds per run and runners per second.
// The runners are written in bulk (see seedRunners), so the set-up of the
// 10,000-runner case takes seconds, not minutes.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("runners=%d", n), func(b *testing.B) {
			s := seedRunners(b, n)
			inv := &invoketest.Recorder{}
			sch, err := scheduler.New(s, inv, scheduler.Config{PollerFunction: "poller"})
			if err != nil {
				b.Fatalf("New: %v", err)
			}
			var seconds float64
			for b.Loop() {
				sum, err := sch.Run(context.Background())
				if err != nil || sum.Invoked != n {
					b.Fatalf("Run() = %+v, %v; want %d invoked", sum, err, n)
				}
				seconds += sum.Duration.Seconds()
			}
			b.ReportMetric(seconds/float64(b.N), "s/run")
			b.ReportMetric(float64(n)*float64(b.N)/seconds, "runners/s")
		})
	}
}

// batchSize is the most items one BatchWriteItem request takes.
const batchSize = 25

// seedRunners returns a store holding n enabled runners. One runner is
// created through the store, so its item has exactly the store's shape;
// the other n-1 are copies of that item under new ids, written with
// BatchWriteItem through the store's own client by a few workers at once.
// The copies do not count against their owner's runner limit, which the
// scheduler never reads.
func seedRunners(b *testing.B, n int) *store.Store {
	b.Helper()
	ctx := context.Background()
	client := dynamotest.Start(b).Client()
	tables := store.Prefixed(dynamotest.Prefix(b))
	s, err := store.New(client, store.Config{Tables: tables})
	if err != nil {
		b.Fatalf("store.New: %v", err)
	}
	if err := s.CreateTables(ctx); err != nil {
		b.Fatalf("CreateTables: %v", err)
	}
	first := &runner.Runner{
		Owner: "owner-0", GitLabURL: "https://gitlab.example.com", SealedToken: []byte{1},
		Description: "0", Runtime: "provided.al2023", Concurrency: 1,
	}
	if err := s.CreateRunner(ctx, first); err != nil {
		b.Fatalf("CreateRunner: %v", err)
	}
	got, err := client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(tables.Runners),
		Key:       map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: first.ID}},
	})
	if err != nil || got.Item == nil {
		b.Fatalf("GetItem(runner %s) = %v, %v; want the item just created", first.ID, got, err)
	}

	batches := make(chan []ddbtypes.WriteRequest)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		failed  error
	)
	for range 4 {
		wg.Go(func() {
			for batch := range batches {
				if err := writeBatch(ctx, client, tables.Runners, batch); err != nil {
					errOnce.Do(func() { failed = err })
				}
			}
		})
	}
	batch := make([]ddbtypes.WriteRequest, 0, batchSize)
	for i := 1; i < n; i++ {
		item := maps.Clone(got.Item)
		item["id"] = &ddbtypes.AttributeValueMemberS{Value: runner.NewID()}
		item["system_id"] = &ddbtypes.AttributeValueMemberS{Value: runner.NewSystemID()}
		item["owner"] = &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("owner-%d", i%100)}
		item["description"] = &ddbtypes.AttributeValueMemberS{Value: fmt.Sprint(i)}
		batch = append(batch, ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{Item: item}})
		if len(batch) == batchSize || i == n-1 {
			batches <- batch
			batch = make([]ddbtypes.WriteRequest, 0, batchSize)
		}
	}
	close(batches)
	wg.Wait()
	if failed != nil {
		b.Fatalf("seed %d runners: %v", n, failed)
	}
	return s
}

// writeBatch writes one batch, sending again whatever DynamoDB left
// unprocessed until nothing is left.
func writeBatch(ctx context.Context, client *dynamodb.Client, table string, batch []ddbtypes.WriteRequest) error {
	pending := map[string][]ddbtypes.WriteRequest{table: batch}
	for len(pending[table]) > 0 {
		out, err := client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
		if err != nil {
			return fmt.Errorf("write batch of %d runners: %w", len(pending[table]), err)
		}
		pending = out.UnprocessedItems
	}
	return nil
}
