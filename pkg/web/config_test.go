package web_test

import (
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/web"
)

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	t.Run("defaults", func(t *testing.T) {
		cfg, err := web.ConfigFromEnv(env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OIDCIssuer != "https://gitlab.com" || cfg.GitLabURL != "https://gitlab.com" {
			t.Errorf("issuer %q gitlab %q, want https://gitlab.com", cfg.OIDCIssuer, cfg.GitLabURL)
		}
		if cfg.MaxRunnersPerUser != 5 || cfg.MaxTimeout() != 840 {
			t.Errorf("max runners %d, max timeout %d; want 5, 840", cfg.MaxRunnersPerUser, cfg.MaxTimeout())
		}
		if strings.Join(cfg.Runtimes, ",") != "provided.al2023,python3.14,nodejs24.x" {
			t.Errorf("runtimes = %v", cfg.Runtimes)
		}
		if cfg.PricePerGBSecond != 0.0000133334 {
			t.Errorf("price = %g", cfg.PricePerGBSecond)
		}
	})
	t.Run("set", func(t *testing.T) {
		cfg, err := web.ConfigFromEnv(env(map[string]string{
			"BASE_URL": "https://runners.example.com/", "MAX_REGISTABLE_RUNNER_COUNT": "0",
			"RUNTIMES": "provided.al2023, python3.12", "ALLOW_HTTP_GITLAB": "true",
			"EXECUTOR_MARGIN_SECONDS": "120",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.BaseURL != "https://runners.example.com" || cfg.InsecureCookies() || cfg.RedirectURL() != "https://runners.example.com/auth/callback" {
			t.Errorf("base %q insecure %v redirect %q", cfg.BaseURL, cfg.InsecureCookies(), cfg.RedirectURL())
		}
		if cfg.MaxRunnersPerUser != 0 || !cfg.AllowHTTPGitLab || cfg.MaxTimeout() != 780 {
			t.Errorf("max runners %d allow http %v max timeout %d", cfg.MaxRunnersPerUser, cfg.AllowHTTPGitLab, cfg.MaxTimeout())
		}
		if strings.Join(cfg.Runtimes, ",") != "provided.al2023,python3.12" {
			t.Errorf("runtimes %v", cfg.Runtimes)
		}
	})
	for name, vars := range map[string]map[string]string{
		"bad number": {"MAX_CONCURRENCY": "many"},
		"bad flag":   {"ALLOW_PRIVATE_GITLAB": "sometimes"},
		"bad base":   {"BASE_URL": "runners.example.com"},
		"margin":     {"EXECUTOR_MARGIN_SECONDS": "400"},
		"bad price":  {"LAMBDA_PRICE_PER_GB_SECOND": "cheap"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := web.ConfigFromEnv(env(vars)); err == nil {
				t.Errorf("ConfigFromEnv(%v) succeeded, want an error", vars)
			}
		})
	}
}
