package imagefn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/jobimage"
)

// KeyAttribute is the records table's hash key (a string, Variant.Key).
const KeyAttribute = "variant"

// Record states.
const (
	StateCreating = "creating"
	StateActive   = "active"
	StateDeleting = "deleting"
)

// CreateTable creates the records table name (on-demand billing, hash key
// KeyAttribute) and waits until it exists. Deployments create it from the
// template; tests and local mode call this.
func CreateTable(ctx context.Context, db *dynamodb.Client, name string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(KeyAttribute), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(KeyAttribute), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("imagefn: create table %s: %w", name, err)
	}
	w := dynamodb.NewTableExistsWaiter(db)
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
		return fmt.Errorf("imagefn: wait for table %s: %w", name, err)
	}
	return nil
}

// Function is the record of one variant's function.
type Function struct {
	Variant
	// Name and ARN are the function's; Image is the ImageUri it was
	// created from.
	Name, ARN, Image string
	// State is StateCreating, StateActive or StateDeleting.
	State string
	// CreatedAt is when the record was first written; LastUsed when a job
	// last used the function (or when it was created).
	CreatedAt, LastUsed time.Time

	owner      string
	leaseUntil time.Time
}

type item = map[string]ddbtypes.AttributeValue

func s(v string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberS{Value: v} }
func n(v int64) ddbtypes.AttributeValue {
	return &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func ts(t time.Time) ddbtypes.AttributeValue { return n(t.UnixNano()) }

func key(v Variant) item { return item{KeyAttribute: s(v.Key())} }

func (f Function) item() item {
	it := item{
		KeyAttribute: s(f.Key()), "name": s(f.Name), "image": s(f.Image), "base": s(f.Base),
		"arch": s(string(f.Arch)), "memory_mb": n(int64(f.MemoryMB)), "storage_mb": n(int64(f.StorageMB)),
		"executor": s(f.Executor), "state": s(f.State), "created_at": ts(f.CreatedAt), "last_used": ts(f.LastUsed),
	}
	if f.ARN != "" {
		it["arn"] = s(f.ARN)
	}
	if f.owner != "" {
		it["owner"] = s(f.owner)
		it["lease_until"] = ts(f.leaseUntil)
	}
	return it
}

func fromItem(it item) (Function, error) {
	str := func(k string) string {
		if v, ok := it[k].(*ddbtypes.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	num := func(k string) int64 {
		if v, ok := it[k].(*ddbtypes.AttributeValueMemberN); ok {
			x, _ := strconv.ParseInt(v.Value, 10, 64)
			return x
		}
		return 0
	}
	f := Function{
		Variant: Variant{Base: str("base"), Arch: jobimage.Arch(str("arch")), MemoryMB: int32(num("memory_mb")),
			StorageMB: int32(num("storage_mb")), Executor: str("executor")},
		Name: str("name"), ARN: str("arn"), Image: str("image"), State: str("state"),
		CreatedAt: time.Unix(0, num("created_at")), LastUsed: time.Unix(0, num("last_used")),
		owner: str("owner"), leaseUntil: time.Unix(0, num("lease_until")),
	}
	if f.Name == "" || f.State == "" {
		return Function{}, errors.New("record lacks name or state")
	}
	return f, nil
}

// isCondFailed reports a failed condition of a conditional write.
func isCondFailed(err error) bool {
	var cf *ddbtypes.ConditionalCheckFailedException
	return errors.As(err, &cf)
}
