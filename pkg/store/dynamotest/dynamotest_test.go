package dynamotest_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) { os.Exit(dynamotest.Main(m)) }

func TestServerAnswersAndTablesAreSeparate(t *testing.T) {
	srv := dynamotest.Start(t)
	if again := dynamotest.Start(t); again != srv {
		t.Errorf("second Start returned another server; want the shared one")
	}
	client := srv.Client()
	ctx := context.Background()
	p1, p2 := dynamotest.Prefix(t), dynamotest.Prefix(t)
	if p1 == p2 {
		t.Fatalf("Prefix returned %q twice", p1)
	}
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(p1 + "things"),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	if _, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(p1 + "things")}); err != nil {
		t.Errorf("DescribeTable(%sthings): %v", p1, err)
	}
	if _, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(p2 + "things")}); err == nil {
		t.Errorf("DescribeTable(%sthings) found a table no one created", p2)
	}
}
