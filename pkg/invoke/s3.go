package invoke

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultPayloadExpiry is how long a stored payload's URL stays valid: an
// asynchronous event may wait in Lambda's queue for up to 6 hours, and the
// reader of a destination record may need it once more after the run.
const DefaultPayloadExpiry = 12 * time.Hour

// S3Payloads stores payloads in an S3 bucket and returns pre-signed GET
// URLs. The bucket should expire objects after a day (lifecycle rule).
type S3Payloads struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	expiry  time.Duration
}

var _ PayloadStore = (*S3Payloads)(nil)

// NewS3Payloads returns a payload store in bucket; expiry 0 means
// DefaultPayloadExpiry.
func NewS3Payloads(client *s3.Client, bucket string, expiry time.Duration) *S3Payloads {
	if expiry <= 0 {
		expiry = DefaultPayloadExpiry
	}
	return &S3Payloads{client: client, presign: s3.NewPresignClient(client), bucket: bucket, expiry: expiry}
}

// Put uploads body as key and returns a pre-signed URL reading it.
func (s *S3Payloads) Put(ctx context.Context, key string, body []byte) (string, error) {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return "", fmt.Errorf("invoke: put payload %s: %w", key, err)
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(s.expiry))
	if err != nil {
		return "", fmt.Errorf("invoke: presign payload %s: %w", key, err)
	}
	return req.URL, nil
}
