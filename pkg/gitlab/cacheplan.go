package gitlab

import (
	"os"
	"strings"
)

// Expand replaces $NAME and ${NAME} in s with the values of the variables,
// as gitlab-runner expands the job's variables in cache and artifact
// settings; an unknown variable expands to "".
func (vs Variables) Expand(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	return os.Expand(s, vs.Get)
}

// CachePlan is what a job does with one of its caches. It is computed once,
// from the job payload, by Job.CachePlans, so that the poller, which
// pre-signs a URL for every key a plan names, and the executor, which uses
// them, cannot disagree.
type CachePlan struct {
	Cache
	// Policy is the cache's policy with variables expanded; "" in the
	// payload means pull-push.
	Policy string
	// Pull and Push say whether the cache is restored before the script
	// and saved after it. Both are false for a policy GitLab does not
	// define.
	Pull, Push bool
	// Keys are the keys to restore from, in order and as written in the
	// payload (the key, its fallback keys, then CACHE_FALLBACK_KEY): the
	// names of the pre-signed URLs. Keys[0] is the key saved to. Fallback
	// keys are listed only when the cache is pulled.
	Keys []string
}

// CachePlans returns the plan of each of the job's caches, in payload
// order.
func (j *Job) CachePlans() []CachePlan {
	if len(j.Cache) == 0 {
		return nil
	}
	fallback := j.Variables.Get("CACHE_FALLBACK_KEY")
	// A fallback key ending in -protected would read protected branches'
	// caches from any branch: gitlab-runner ignores it, once expanded.
	if strings.HasSuffix(j.Variables.Expand(fallback), "-protected") {
		fallback = ""
	}
	plans := make([]CachePlan, 0, len(j.Cache))
	for _, c := range j.Cache {
		p := CachePlan{Cache: c, Policy: j.Variables.Expand(c.Policy), Keys: []string{c.Key}}
		if p.Policy == "" {
			p.Policy = CachePolicyPullPush
		}
		p.Pull = p.Policy == CachePolicyPullPush || p.Policy == CachePolicyPull
		p.Push = p.Policy == CachePolicyPullPush || p.Policy == CachePolicyPush
		if p.Pull {
			p.Keys = append(p.Keys, c.FallbackKeys...)
			if fallback != "" {
				p.Keys = append(p.Keys, fallback)
			}
		}
		plans = append(plans, p)
	}
	return plans
}

// CacheKey is the key a cache archive is stored under, for a key as
// written in the payload: variables expanded, and an empty key meaning
// <job name>/<git ref>, as gitlab-runner does.
func (j *Job) CacheKey(key string) string {
	if key == "" {
		return j.JobInfo.Name + "/" + j.GitInfo.Ref
	}
	return j.Variables.Expand(key)
}

// Expand returns the cache plan with the variables expanded in its paths,
// as gitlab-runner expands them before archiving: `paths: [$APP/vendor]`.
// vs are the job's variables as its environment has them (the runner's
// own, such as CI_PROJECT_DIR, included). The key and policy are left as
// CachePlans made them.
func (p CachePlan) Expand(vs Variables) CachePlan {
	p.Paths = vs.expandAll(p.Paths)
	return p
}

// Expand returns the artifact with the variables expanded in its name,
// paths and exclude patterns, as gitlab-runner expands them:
// `name: $CI_JOB_NAME`, `paths: [$APP/dist]`. vs are the job's variables
// as its environment has them (the runner's own included).
func (a Artifact) Expand(vs Variables) Artifact {
	a.Name = vs.Expand(a.Name)
	a.Paths = vs.expandAll(a.Paths)
	a.Exclude = vs.expandAll(a.Exclude)
	return a
}

// expandAll expands each of ss into a new slice; nil stays nil.
func (vs Variables) expandAll(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = vs.Expand(s)
	}
	return out
}
