package archive_test

import (
	"errors"
	"testing"

	"gitlab-serverless-runner/pkg/archive"
)

func TestSanitizeCacheKey(t *testing.T) {
	tests := []struct {
		key     string
		want    string
		wantErr bool
	}{
		{key: "build-main", want: "build-main"},
		{key: "rspec/refs/heads/main", want: "rspec/refs/heads/main"},
		{key: "a%2fb", want: "a/b"},
		{key: "a%2Fb%2E%2Ec", want: "a/b..c"},
		{key: `win\path\key`, want: "win/path/key"},
		{key: "a/./b", want: "a/b"},
		{key: "a/b/../c", want: "a/c"},
		{key: "a%2f..%2fb", want: "b"},
		{key: "/leading/slash", want: "leading/slash"},
		{key: "a//b/", want: "a/b"},
		{key: "key with spaces  \t\n", want: "key with spaces"},
		{key: "a/b /.", want: "a/b"},
		{key: "a/.. /.", want: "", wantErr: true},
		{key: "x/a/.. /.", want: "x"},
		{key: "inner space/ key", want: "inner space/ key"},
		{key: "", wantErr: true},
		{key: "   ", wantErr: true},
		{key: ".", wantErr: true},
		{key: "a/..", wantErr: true},
		{key: "..", wantErr: true},
		{key: "../other-project", wantErr: true},
		{key: "%2e%2e%2fother", wantErr: true},
		{key: `..\other`, wantErr: true},
		{key: "a/../../b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := archive.SanitizeCacheKey(tt.key)
			if tt.wantErr {
				if !errors.Is(err, archive.ErrBadCacheKey) {
					t.Fatalf("got %q, %v; want an error wrapping ErrBadCacheKey", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %q", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
