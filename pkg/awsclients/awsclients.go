// Package awsclients builds the AWS SDK clients the Lambda functions wire at
// cold start: the default AWS configuration, and DynamoDB, ECR, Lambda and S3
// clients whose endpoint a local server may replace. It reads no
// environment variables of its own: each function's main reads the
// endpoints and passes them in.
package awsclients

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Config loads the AWS configuration (region, credentials) the way the SDK
// does by default: from the environment, shared files and the Lambda role.
func Config(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}

// DynamoDB returns a DynamoDB client; a non-empty endpoint (e.g. DynamoDB
// Local's address) replaces the service endpoint.
func DynamoDB(cfg aws.Config, endpoint string) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// ECR returns an ECR client; a non-empty endpoint (e.g. moto_server's
// address) replaces the service endpoint.
func ECR(cfg aws.Config, endpoint string) *ecr.Client {
	return ecr.NewFromConfig(cfg, func(o *ecr.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// Lambda returns a Lambda client; a non-empty endpoint (e.g. the address of
// `sam local start-lambda`) replaces the service endpoint.
func Lambda(cfg aws.Config, endpoint string) *lambda.Client {
	return lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// S3 returns an S3 client; a non-empty endpoint (a local S3-compatible
// server) replaces the service endpoint and, since such servers seldom
// serve buckets as host names, switches to path-style addressing.
func S3(cfg aws.Config, endpoint string) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint, o.UsePathStyle = aws.String(endpoint), true
		}
	})
}
