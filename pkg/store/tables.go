package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute types of key attributes, as DynamoDB spells them.
const (
	TypeString = "S"
	TypeNumber = "N"
	TypeBinary = "B"
)

// Attribute is a key attribute: a name and a type.
type Attribute struct {
	Name string
	Type string // TypeString, TypeNumber or TypeBinary
}

// Index is a global secondary index. It projects all attributes.
type Index struct {
	Name     string
	HashKey  Attribute
	RangeKey Attribute // zero when the index has no range key
}

// TableSpec is the definition of one table: its keys, indexes and TTL.
// Tables returns the one definition the store, CreateTables and the
// deployment template must agree on.
type TableSpec struct {
	// Suffix names the table: the configured prefix plus Suffix, unless
	// TableNames gives the name explicitly.
	Suffix        string
	HashKey       Attribute
	RangeKey      Attribute // zero when the table has no range key
	GlobalIndexes []Index
	// TTLAttribute holds the expiry time (seconds since the epoch); "" if
	// the table has no TTL.
	TTLAttribute string
}

// Table suffixes.
const (
	UsersSuffix   = "users"
	RunnersSuffix = "runners"
	JobsSuffix    = "jobs"
	SlotsSuffix   = "slots"
)

// OwnerIndex is the runners table's index by owner, ranged by creation time.
const OwnerIndex = "owner-index"

// OpenLeaseIndex is the jobs table's sparse index of running jobs, ranged by
// the end of their lease: only a running record carries its attributes, so
// the sweeper finds the jobs whose lease ran out without reading the rest.
const OpenLeaseIndex = "open-lease-index"

// Tables returns the definition of every table the store uses.
//
// Concurrency slots live in their own table: one item per (runner, slot
// number), taken with a conditional put that succeeds only if the item is
// absent or its lease has expired. A slot held by a crashed executor thus
// frees itself when its lease (the job timeout plus a margin) ends, without
// any sweeper; the TTL only removes old items.
func Tables() []TableSpec {
	return []TableSpec{
		{
			Suffix:  UsersSuffix,
			HashKey: Attribute{"sub", TypeString},
		},
		{
			Suffix:  RunnersSuffix,
			HashKey: Attribute{"id", TypeString},
			GlobalIndexes: []Index{{
				Name:     OwnerIndex,
				HashKey:  Attribute{"owner", TypeString},
				RangeKey: Attribute{"created_at", TypeNumber}, // unix nanoseconds
			}},
		},
		{
			Suffix:   JobsSuffix,
			HashKey:  Attribute{"runner_id", TypeString},
			RangeKey: Attribute{"job_id", TypeNumber},
			GlobalIndexes: []Index{{
				Name:     OpenLeaseIndex,
				HashKey:  Attribute{"open", TypeString},          // "1" while running
				RangeKey: Attribute{"open_lease_ms", TypeNumber}, // unix milliseconds
			}},
			TTLAttribute: "expires_at",
		},
		{
			Suffix:       SlotsSuffix,
			HashKey:      Attribute{"runner_id", TypeString},
			RangeKey:     Attribute{"slot", TypeNumber},
			TTLAttribute: "expires_at",
		},
	}
}

// TableNames are the names of the store's tables in one deployment.
type TableNames struct {
	Users   string
	Runners string
	Jobs    string
	Slots   string
}

// Prefixed returns the table names prefix + suffix, e.g. "dev-runners".
func Prefixed(prefix string) TableNames {
	return TableNames{
		Users:   prefix + UsersSuffix,
		Runners: prefix + RunnersSuffix,
		Jobs:    prefix + JobsSuffix,
		Slots:   prefix + SlotsSuffix,
	}
}

// Name returns the name of the table with the given suffix.
func (n TableNames) Name(suffix string) string {
	switch suffix {
	case UsersSuffix:
		return n.Users
	case RunnersSuffix:
		return n.Runners
	case JobsSuffix:
		return n.Jobs
	case SlotsSuffix:
		return n.Slots
	}
	return ""
}

func (n TableNames) validate() error {
	for _, spec := range Tables() {
		if n.Name(spec.Suffix) == "" {
			return fmt.Errorf("store: no name for the %s table", spec.Suffix)
		}
	}
	return nil
}

// CreateTables creates every table that does not exist yet, on demand
// billing, and turns on their TTL. It is for tests and local mode; deployed
// tables come from the template.
func (s *Store) CreateTables(ctx context.Context) error {
	for _, spec := range Tables() {
		name := s.tables.Name(spec.Suffix)
		_, err := s.client.CreateTable(ctx, createTableInput(name, spec))
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: create table %s: %w", name, err)
		}
		if err := s.db.Table(name).Wait(ctx); err != nil {
			return fmt.Errorf("store: wait for table %s: %w", name, err)
		}
		if spec.TTLAttribute != "" {
			_, err := s.client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
				TableName: aws.String(name),
				TimeToLiveSpecification: &types.TimeToLiveSpecification{
					AttributeName: aws.String(spec.TTLAttribute),
					Enabled:       aws.Bool(true),
				},
			})
			if err != nil {
				return fmt.Errorf("store: enable TTL on %s: %w", name, err)
			}
		}
	}
	return nil
}

func createTableInput(name string, spec TableSpec) *dynamodb.CreateTableInput {
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
	}
	defined := map[string]bool{}
	define := func(a Attribute) {
		if a.Name == "" || defined[a.Name] {
			return
		}
		defined[a.Name] = true
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{
			AttributeName: aws.String(a.Name),
			AttributeType: types.ScalarAttributeType(a.Type),
		})
	}
	keySchema := func(hash, rng Attribute) []types.KeySchemaElement {
		define(hash)
		ks := []types.KeySchemaElement{{AttributeName: aws.String(hash.Name), KeyType: types.KeyTypeHash}}
		if rng.Name != "" {
			define(rng)
			ks = append(ks, types.KeySchemaElement{AttributeName: aws.String(rng.Name), KeyType: types.KeyTypeRange})
		}
		return ks
	}
	in.KeySchema = keySchema(spec.HashKey, spec.RangeKey)
	for _, idx := range spec.GlobalIndexes {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName:  aws.String(idx.Name),
			KeySchema:  keySchema(idx.HashKey, idx.RangeKey),
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		})
	}
	return in
}
