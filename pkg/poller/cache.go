package poller

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"gitlab-serverless-runner/pkg/archive"
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

// cacheWant is what the executor may do with one key.
type cacheWant struct{ get, put bool }

// cacheKeys lists the keys of the job's caches as written in the payload,
// with what each may be used for: the main key per policy, fallback keys
// and CACHE_FALLBACK_KEY for reading only.
func cacheKeys(job *gitlab.Job) map[string]cacheWant {
	keys := map[string]cacheWant{}
	add := func(k string, w cacheWant) {
		old := keys[k]
		keys[k] = cacheWant{get: old.get || w.get, put: old.put || w.put}
	}
	for _, c := range job.Cache {
		policy := expand(c.Policy, job.Variables)
		pull := policy == "" || policy == gitlab.CachePolicyPullPush || policy == gitlab.CachePolicyPull
		push := policy == "" || policy == gitlab.CachePolicyPullPush || policy == gitlab.CachePolicyPush
		add(c.Key, cacheWant{get: pull, put: push})
		if pull {
			for _, fk := range c.FallbackKeys {
				add(fk, cacheWant{get: true})
			}
		}
	}
	if len(keys) > 0 {
		if fk, ok := job.Variables.Lookup("CACHE_FALLBACK_KEY"); ok && fk != "" && !strings.HasSuffix(expand(fk, job.Variables), "-protected") {
			add(fk, cacheWant{get: true})
		}
	}
	return keys
}

// expandedKey is the key a cache is stored under: variables expanded, and
// an empty key meaning <job name>/<git ref>, as the runner does.
func expandedKey(key string, job *gitlab.Job) string {
	if key == "" {
		return job.JobInfo.Name + "/" + job.GitInfo.Ref
	}
	return expand(key, job.Variables)
}

func expand(s string, vars gitlab.Variables) string {
	return os.Expand(s, func(name string) string { return vars.Get(name) })
}

// presignCache returns the cache URLs of the job for runner runnerID; keys
// that cannot be stored (they climb out of the prefix) get no URL, and the
// executor says so in the trace.
func presignCache(ctx context.Context, p Presigner, runnerID string, job *gitlab.Job, ttl time.Duration) (map[string]CacheURLs, error) {
	if p == nil {
		return nil, nil
	}
	out := map[string]CacheURLs{}
	for raw, want := range cacheKeys(job) {
		obj, err := CacheObjectKey(runnerID, job.JobInfo.ProjectID, expandedKey(raw, job))
		if err != nil {
			continue
		}
		var u CacheURLs
		if want.get {
			if u.GetURL, err = p.PresignGet(ctx, obj, ttl); err != nil {
				return nil, err
			}
		}
		if want.put {
			if u.PutURL, err = p.PresignPut(ctx, obj, ttl); err != nil {
				return nil, err
			}
		}
		out[raw] = u
	}
	return out, nil
}
