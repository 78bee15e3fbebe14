package preparer_test

import (
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/preparer"
)

func TestBoundsChoose(t *testing.T) {
	b := preparer.Bounds{MinMemory: 512, MaxMemory: 4096, DefaultMemory: 1024, MaxStorage: 8192, Archs: []jobimage.Arch{jobimage.X8664, jobimage.ARM64}}
	v := func(kv ...string) gitlab.Variables {
		var out gitlab.Variables
		for i := 0; i < len(kv); i += 2 {
			out = append(out, gitlab.Variable{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tt := range []struct {
		name string
		vars gitlab.Variables
		want preparer.Compute
		bad  string // the variable refused
	}{
		{"defaults", nil, preparer.Compute{Arch: jobimage.X8664, MemoryMB: 1024, StorageMB: 4096}, ""},
		{"all set", v("LAMBDA_MEMORY", "4096", "LAMBDA_EPHEMERAL_STORAGE", "8192", "LAMBDA_ARCH", "arm64"), preparer.Compute{Arch: jobimage.ARM64, MemoryMB: 4096, StorageMB: 8192}, ""},
		{"synonyms and units", v("LAMBDA_MEMORY", " 2048MB ", "LAMBDA_ARCH", "amd64"), preparer.Compute{Arch: jobimage.X8664, MemoryMB: 2048, StorageMB: 4096}, ""},
		{"memory below", v("LAMBDA_MEMORY", "256"), preparer.Compute{}, "LAMBDA_MEMORY"},
		{"memory not a number", v("LAMBDA_MEMORY", "lots"), preparer.Compute{}, "LAMBDA_MEMORY"},
		{"storage above", v("LAMBDA_EPHEMERAL_STORAGE", "10240"), preparer.Compute{}, "LAMBDA_EPHEMERAL_STORAGE"},
		{"unknown arch", v("LAMBDA_ARCH", "riscv64"), preparer.Compute{}, "LAMBDA_ARCH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.Choose(tt.vars)
			if tt.bad != "" {
				ce, ok := err.(*preparer.ComputeError)
				if !ok || ce.Variable != tt.bad {
					t.Errorf("Choose = %+v, %v; want %s refused", got, err, tt.bad)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Choose = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	for name, bad := range map[string]preparer.Bounds{
		"max over Lambda":       {MaxMemory: 20000},
		"default outside":       {MaxMemory: 1024, DefaultMemory: 2048},
		"default arch not kept": {Archs: []jobimage.Arch{jobimage.ARM64}, DefaultArch: jobimage.X8664},
		"storage below Lambda":  {MinStorage: 256},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, bad)
		}
	}
	if err := (preparer.Bounds{}).Validate(); err != nil {
		t.Errorf("the zero Bounds: %v", err)
	}
}
