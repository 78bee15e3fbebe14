package gitlab_test

import (
	"reflect"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
)

func TestCachePlans(t *testing.T) {
	vars := func(kv ...string) gitlab.Variables {
		var vs gitlab.Variables
		for i := 0; i < len(kv); i += 2 {
			vs = append(vs, gitlab.Variable{Key: kv[i], Value: kv[i+1]})
		}
		return vs
	}
	tests := []struct {
		name       string
		cache      gitlab.Cache
		vars       gitlab.Variables
		wantPolicy string
		wantPull   bool
		wantPush   bool
		wantKeys   []string
	}{
		{"empty policy is pull-push", gitlab.Cache{Key: "k", FallbackKeys: []string{"f"}}, nil, "pull-push", true, true, []string{"k", "f"}},
		{"push has no fallback", gitlab.Cache{Key: "k", FallbackKeys: []string{"f"}, Policy: "push"}, vars("CACHE_FALLBACK_KEY", "g"), "push", false, true, []string{"k"}},
		{"policy from a variable", gitlab.Cache{Key: "k", Policy: "$POLICY"}, vars("POLICY", "pull"), "pull", true, false, []string{"k"}},
		{"policy with braces", gitlab.Cache{Key: "k", Policy: "${POLICY}"}, vars("POLICY", "push"), "push", false, true, []string{"k"}},
		{"unknown policy does nothing", gitlab.Cache{Key: "k", Policy: "$POLICY"}, vars("POLICY", "sometimes"), "sometimes", false, false, []string{"k"}},
		{"CACHE_FALLBACK_KEY last", gitlab.Cache{Key: "k", FallbackKeys: []string{"f"}}, vars("CACHE_FALLBACK_KEY", "g"), "pull-push", true, true, []string{"k", "f", "g"}},
		{"protected fallback ignored once expanded", gitlab.Cache{Key: "k"}, vars("BR", "main-protected", "CACHE_FALLBACK_KEY", "$BR"), "pull-push", true, true, []string{"k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := &gitlab.Job{Cache: []gitlab.Cache{tt.cache}, Variables: tt.vars}
			plans := job.CachePlans()
			if len(plans) != 1 {
				t.Fatalf("plans = %d, want 1", len(plans))
			}
			p := plans[0]
			if p.Policy != tt.wantPolicy || p.Pull != tt.wantPull || p.Push != tt.wantPush || !reflect.DeepEqual(p.Keys, tt.wantKeys) {
				t.Errorf("plan = policy %q pull %v push %v keys %q; want %q %v %v %q", p.Policy, p.Pull, p.Push, p.Keys, tt.wantPolicy, tt.wantPull, tt.wantPush, tt.wantKeys)
			}
		})
	}
}

func TestCacheKey(t *testing.T) {
	job := &gitlab.Job{JobInfo: gitlab.JobInfo{Name: "test"}, GitInfo: gitlab.GitInfo{Ref: "main"},
		Variables: gitlab.Variables{{Key: "CI_COMMIT_REF_SLUG", Value: "main"}}}
	for key, want := range map[string]string{"": "test/main", "deps-$CI_COMMIT_REF_SLUG": "deps-main", "plain": "plain", "$UNSET-x": "-x"} {
		if got := job.CacheKey(key); got != want {
			t.Errorf("CacheKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestExpandPathsAndNames(t *testing.T) {
	vs := gitlab.Variables{
		{Key: "APP", Value: "web"},
		{Key: "CI_PROJECT_DIR", Value: "/builds/group/demo"},
		{Key: "CI_JOB_NAME", Value: "build"},
	}
	a := gitlab.Artifact{Name: "$CI_JOB_NAME-${APP}", Paths: []string{"$APP/dist", "$CI_PROJECT_DIR/out", "plain"}, Exclude: []string{"$APP/dist/*.map"}, When: "$APP"}
	got := a.Expand(vs)
	want := gitlab.Artifact{Name: "build-web", Paths: []string{"web/dist", "/builds/group/demo/out", "plain"}, Exclude: []string{"web/dist/*.map"}, When: "$APP"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Artifact.Expand = %+v, want %+v", got, want)
	}
	if a.Paths[0] != "$APP/dist" {
		t.Errorf("Expand changed the artifact it was called on: %q", a.Paths[0])
	}
	job := &gitlab.Job{Cache: []gitlab.Cache{{Key: "$APP", Paths: []string{"$APP/node_modules"}, Policy: "pull"}}, Variables: vs}
	p := job.CachePlans()[0].Expand(vs)
	if !reflect.DeepEqual(p.Paths, []string{"web/node_modules"}) || p.Key != "$APP" || !reflect.DeepEqual(p.Keys, []string{"$APP"}) || !p.Pull {
		t.Errorf("CachePlan.Expand = %+v, want paths expanded and the key as written", p)
	}
}
