package poller

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"gitlab-serverless-runner/pkg/archive"
	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
)

// Presigner makes the URLs through which an executor reads and writes one
// cache object without holding credentials. Implementations are safe for
// concurrent use.
type Presigner interface {
	// PresignGet returns a URL that downloads key (404 when absent).
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	// PresignPut returns a URL that uploads key with PUT.
	PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// S3Presigner presigns cache objects in one S3 bucket.
type S3Presigner struct {
	presign *s3.PresignClient
	bucket  string
}

var _ Presigner = (*S3Presigner)(nil)

// NewS3Presigner returns a presigner for bucket.
func NewS3Presigner(client *s3.Client, bucket string) *S3Presigner {
	return &S3Presigner{presign: s3.NewPresignClient(client), bucket: bucket}
}

// PresignGet implements Presigner.
func (p *S3Presigner) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	req, err := p.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(p.bucket), Key: aws.String(key)}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("poller: presign GET %s: %w", key, err)
	}
	return req.URL, nil
}

// PresignPut implements Presigner.
func (p *S3Presigner) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	req, err := p.presign.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(p.bucket), Key: aws.String(key)}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("poller: presign PUT %s: %w", key, err)
	}
	return req.URL, nil
}

// CacheObjectKey is where a cache archive of a runner's project lives:
// runner/<runner id>/project/<project id>/<sanitized key>. Each runner
// reaches only its own prefix, because only the poller presigns. key is
// the cache key after variable expansion.
func CacheObjectKey(runnerID string, projectID int64, key string) (string, error) {
	clean, err := archive.SanitizeCacheKey(key)
	if err != nil {
		return "", err
	}
	return "runner/" + runnerID + "/project/" + strconv.FormatInt(projectID, 10) + "/" + clean, nil
}

// presignCache returns the cache URLs of the job for runner runnerID; keys
// that cannot be stored (they climb out of the prefix) get no URL, and the
// executor says so in the trace.
func presignCache(ctx context.Context, p Presigner, runnerID string, job *gitlab.Job, ttl time.Duration) (map[string]dispatch.CacheURLs, error) {
	if p == nil {
		return nil, nil
	}
	// A key may be named by several caches: its URLs serve them all.
	type want struct{ get, put bool }
	keys := map[string]want{}
	for _, plan := range job.CachePlans() {
		for i, k := range plan.Keys {
			w := keys[k]
			w.get = w.get || plan.Pull
			w.put = w.put || plan.Push && i == 0
			keys[k] = w
		}
	}
	out := map[string]dispatch.CacheURLs{}
	for raw, w := range keys {
		obj, err := CacheObjectKey(runnerID, job.JobInfo.ProjectID, job.CacheKey(raw))
		if err != nil {
			continue
		}
		var u dispatch.CacheURLs
		if w.get {
			if u.GetURL, err = p.PresignGet(ctx, obj, ttl); err != nil {
				return nil, err
			}
		}
		if w.put {
			if u.PutURL, err = p.PresignPut(ctx, obj, ttl); err != nil {
				return nil, err
			}
		}
		out[raw] = u
	}
	return out, nil
}
