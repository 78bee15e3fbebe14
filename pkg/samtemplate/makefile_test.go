package samtemplate_test

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/samtemplate"
)

// makefileBuilt returns the resources SAM builds with the Makefile.
func makefileBuilt(t testing.TB, tpl *samtemplate.Template) []samtemplate.Resource {
	t.Helper()
	var out []samtemplate.Resource
	for _, r := range tpl.Resources("") {
		if samtemplate.Path(r.Metadata, "BuildMethod") == "makefile" {
			out = append(out, r)
		}
	}
	return out
}

func TestEveryFunctionAndLayerIsBuiltByTheMakefile(t *testing.T) {
	tpl := loadTemplate(t)
	root := repoRoot(t)
	built := makefileBuilt(t, tpl)
	var ids []string
	for _, r := range built {
		ids = append(ids, r.ID)
	}
	for _, r := range tpl.Resources("") {
		if (r.Type == "AWS::Serverless::Function" || r.Type == "AWS::Serverless::LayerVersion") && !slices.Contains(ids, r.ID) {
			t.Errorf("%s (%s) is not built with BuildMethod makefile", r.ID, r.Type)
		}
	}
	targets, err := samtemplate.MakeTargets(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range built {
		t.Run(r.ID, func(t *testing.T) {
			target := "build-" + r.ID
			if !slices.Contains(targets, target) {
				t.Fatalf("the Makefile has no target %s", target)
			}
			// SAM copies CodeUri/ContentUri and runs make there: it must
			// be the module root, where the Makefile and go.mod are.
			uri := r.Properties["CodeUri"]
			if r.Type == "AWS::Serverless::LayerVersion" {
				uri = r.Properties["ContentUri"]
			}
			if uri != "." {
				t.Errorf("code URI: got %s, want . (the module root)", render(uri))
			}
			cmds, err := samtemplate.DryRun(root, target, "ARTIFACTS_DIR=/artifacts")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(cmds, "/artifacts/") {
				t.Errorf("make -n %s writes nothing into ARTIFACTS_DIR:\n%s", target, cmds)
			}
			for _, line := range strings.Split(cmds, "\n") {
				if !strings.Contains(line, " build ") {
					continue
				}
				wants := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64", "-tags lambda.norpc", "-trimpath"}
				if strings.Contains(line, `"/artifacts/executors/`) {
					// The preparer carries an executor for each
					// architecture a job may choose: each for its own.
					arch := goarchOf[strings.Split(strings.SplitAfter(line, `/artifacts/executors/`)[1], "/")[0]]
					wants[2] = "GOARCH=" + arch
				}
				for _, want := range wants {
					if !strings.Contains(line, want) {
						t.Errorf("go build without %s:\n%s", want, line)
					}
				}
			}
			if r.Type == "AWS::Serverless::Function" && samtemplate.Path(r.Properties, "Handler") == "bootstrap" &&
				!strings.Contains(cmds, `-o "/artifacts/bootstrap"`) {
				t.Errorf("make -n %s does not write /artifacts/bootstrap:\n%s", target, cmds)
			}
			paths := samtemplate.RepoPaths(cmds)
			if len(paths) == 0 {
				t.Errorf("make -n %s names no source in the repository:\n%s", target, cmds)
			}
			for _, p := range paths {
				st, err := os.Stat(filepath.Join(root, p))
				if err != nil {
					t.Errorf("make -n %s names %s: %v", target, p, err)
					continue
				}
				if st.IsDir() && strings.HasPrefix(p, "functions/") {
					pkg, err := build.ImportDir(filepath.Join(root, p), 0)
					if err != nil || pkg.Name != "main" {
						t.Errorf("make -n %s builds %s, which is not a main package (%v)", target, p, err)
					}
				}
			}
		})
	}
}

func TestBuildArchitectureFollowsGOARCH_LAMBDA(t *testing.T) {
	root := repoRoot(t)
	tests := []struct{ vars, want string }{
		{"", "GOARCH=arm64"},
		{"GOARCH_LAMBDA=amd64", "GOARCH=amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			vars := []string{"ARTIFACTS_DIR=/artifacts"}
			if tt.vars != "" {
				vars = append(vars, tt.vars)
			}
			cmds, err := samtemplate.DryRun(root, "build-ExecutorLayer", vars...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(cmds, tt.want) {
				t.Errorf("make -n build-ExecutorLayer %s: no %s in\n%s", tt.vars, tt.want, cmds)
			}
		})
	}
}

func TestMakeBuildBuildsEveryArtifact(t *testing.T) {
	tpl := loadTemplate(t)
	cmds, err := samtemplate.DryRun(repoRoot(t), "build")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range makefileBuilt(t, tpl) {
		if !strings.Contains(cmds, " "+r.ID+" ") && !strings.Contains(cmds, " "+r.ID+";") {
			t.Errorf("make build does not build %s:\n%s", r.ID, cmds)
		}
	}
}

func TestExecWrapperIsWhereTheLayerPutsIt(t *testing.T) {
	tpl := loadTemplate(t)
	cmds, err := samtemplate.DryRun(repoRoot(t), "build-ExecutorLayer", "ARTIFACTS_DIR=/artifacts")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range executors {
		fn := function(t, tpl, id)
		w, ok := samtemplate.Path(fn.Properties, "Environment", "Variables", "AWS_LAMBDA_EXEC_WRAPPER").(string)
		if !ok {
			continue
		}
		// Layers are extracted under /opt.
		inLayer := "/artifacts/" + strings.TrimPrefix(w, "/opt/")
		if !strings.HasPrefix(w, "/opt/") || !strings.Contains(cmds, inLayer) {
			t.Errorf("%s: AWS_LAMBDA_EXEC_WRAPPER=%s, but build-ExecutorLayer does not write %s:\n%s", id, w, inLayer, cmds)
		}
	}
}

// SAM CLI passes make no architecture: every function and the layer name
// arch/<Architecture>/Makefile as their ContextPath, and each of those
// builds the root Makefile's targets for its architecture.
func TestEveryArchitectureHasItsMakefile(t *testing.T) {
	tpl := loadTemplate(t)
	root := repoRoot(t)
	for _, r := range makefileBuilt(t, tpl) {
		if got, want := render(samtemplate.Path(r.Metadata, "ContextPath")), "arch/${Architecture}"; got != want {
			t.Errorf("%s Metadata ContextPath: got %s, want !Sub %s", r.ID, got, want)
		}
	}
	layer, _ := tpl.Resource("ExecutorLayer")
	if got, want := render(samtemplate.Path(layer.Metadata, "BuildArchitecture")), "!Ref Architecture"; got != want {
		t.Errorf("ExecutorLayer BuildArchitecture: got %s, want %s", got, want)
	}
	for _, v := range asList(samtemplate.Path(tpl.Section("Parameters"), "Architecture", "AllowedValues")) {
		arch := v.(string)
		t.Run(arch, func(t *testing.T) {
			// GOARCH_LAMBDA in the environment must not change it.
			t.Setenv("GOARCH_LAMBDA", "riscv64")
			for _, r := range makefileBuilt(t, tpl) {
				cmds, err := samtemplate.DryRun(root, "build-"+r.ID, "--makefile=arch/"+arch+"/Makefile", "ARTIFACTS_DIR=/artifacts")
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(cmds, "/artifacts/") {
					t.Errorf("make -n build-%s through arch/%s/Makefile writes nothing into ARTIFACTS_DIR:\n%s", r.ID, arch, cmds)
				}
				for _, line := range strings.Split(cmds, "\n") {
					if strings.Contains(line, `"/artifacts/executors/`) {
						continue // the preparer's executors: one per architecture, whatever its own
					}
					if strings.Contains(line, " build ") && !strings.Contains(line, "GOARCH="+goarchOf[arch]+" ") {
						t.Errorf("build-%s through arch/%s/Makefile: want GOARCH=%s in\n%s", r.ID, arch, goarchOf[arch], line)
					}
				}
			}
		})
	}
}
