package samtemplate

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// envName is what an environment variable read by the code looks like.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// EnvRead is one environment variable read by Go code.
type EnvRead struct {
	Name string
	// Pos is file:line of the read.
	Pos string
}

// EnvReads returns the environment variables the main package pkg (e.g.
// "./functions/web", relative to the module root dir) and every package
// of this module it imports read, sorted by name, one entry per name.
//
// The convention it relies on, which the configuration code follows: a
// variable is named by a string literal, either
//   - as the first argument of os.Getenv or os.LookupEnv, or of a function
//     of the same package whose first parameter is a string it passes to
//     one of them (envOr("NAME", "default")), or
//   - inside a function that takes a lookup function as a parameter (of
//     type func(string) string or func(string) (string, bool)): as the
//     first argument of a call of a local function value (lookup("NAME"),
//     get("NAME")), or anywhere as a literal of capitals with an
//     underscore ("NAME_WITH_UNDERSCORE", e.g. in a table of names).
func EnvReads(dir, pkg string) ([]EnvRead, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: find the module root: %w", err)
	}
	cmd := exec.Command("go", "list", "-deps",
		"-f", `{{if and .Module .Module.Main}}{{.Dir}}{{"\t"}}{{join .GoFiles " "}}{{end}}`, pkg)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("samtemplate: list the packages of %s: %w: %s", pkg, err, stderr.String())
	}
	seen := map[string]EnvRead{}
	fset := token.NewFileSet()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkgDir, files, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		var parsed []*ast.File
		for _, name := range strings.Fields(files) {
			f, err := parser.ParseFile(fset, filepath.Join(pkgDir, name), nil, 0)
			if err != nil {
				return nil, fmt.Errorf("samtemplate: parse %s: %w", name, err)
			}
			parsed = append(parsed, f)
		}
		helpers := envHelpers(parsed)
		for _, f := range parsed {
			for _, r := range envReadsInFile(fset, f, root, helpers) {
				if _, ok := seen[r.Name]; !ok {
					seen[r.Name] = r
				}
			}
		}
	}
	reads := make([]EnvRead, 0, len(seen))
	for _, r := range seen {
		reads = append(reads, r)
	}
	sort.Slice(reads, func(i, j int) bool { return reads[i].Name < reads[j].Name })
	return reads, nil
}

// envHelpers returns the names of the package-level functions whose first
// parameter is a string they pass to os.Getenv or os.LookupEnv, such as
// envOr(key, def string).
func envHelpers(files []*ast.File) map[string]bool {
	helpers := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Body == nil || fn.Type.Params == nil || len(fn.Type.Params.List) == 0 {
				continue
			}
			first := fn.Type.Params.List[0]
			if !isIdent(first.Type, "string") || len(first.Names) == 0 {
				continue
			}
			param := first.Names[0].Name
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if call, ok := n.(*ast.CallExpr); ok && isOSEnvCall(call) && len(call.Args) > 0 && isIdent(call.Args[0], param) {
					helpers[fn.Name.Name] = true
				}
				return true
			})
		}
	}
	return helpers
}

func isOSEnvCall(call *ast.CallExpr) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv")
}

// envLiteral is a name in a string literal that can only be an environment
// variable inside configuration code: capitals with an underscore.
var envLiteral = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)

func envReadsInFile(fset *token.FileSet, f *ast.File, root string, helpers map[string]bool) []EnvRead {
	var reads []EnvRead
	add := func(lit *ast.BasicLit, pattern *regexp.Regexp) {
		if lit.Kind != token.STRING {
			return
		}
		name, err := strconv.Unquote(lit.Value)
		if err != nil || !pattern.MatchString(name) {
			return
		}
		pos := fset.Position(lit.Pos())
		file := pos.Filename
		if rel, err := filepath.Rel(root, file); err == nil {
			file = rel
		}
		reads = append(reads, EnvRead{Name: name, Pos: fmt.Sprintf("%s:%d", file, pos.Line)})
	}
	record := func(call *ast.CallExpr) {
		if len(call.Args) == 0 {
			return
		}
		if lit, ok := call.Args[0].(*ast.BasicLit); ok {
			add(lit, envName)
		}
	}
	// os.Getenv, os.LookupEnv and helpers built on them, anywhere.
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if isOSEnvCall(call) {
			record(call)
		}
		if id, ok := call.Fun.(*ast.Ident); ok && helpers[id.Name] {
			record(call)
		}
		return true
	})
	// Calls of local function values inside functions taking a lookup.
	ast.Inspect(f, func(n ast.Node) bool {
		var typ *ast.FuncType
		var body *ast.BlockStmt
		switch fn := n.(type) {
		case *ast.FuncDecl:
			typ, body = fn.Type, fn.Body
		case *ast.FuncLit:
			typ, body = fn.Type, fn.Body
		default:
			return true
		}
		if body == nil || !takesLookup(typ) {
			return true
		}
		ast.Inspect(body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Obj != nil && id.Obj.Kind == ast.Var {
					record(n)
				}
				// Methods of a local value, such as an envvar.Reader's
				// r.String("NAME").
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Obj != nil && id.Obj.Kind == ast.Var {
						record(n)
					}
				}
			case *ast.BasicLit:
				add(n, envLiteral)
			}
			return true
		})
		return false
	})
	return reads
}

// takesLookup reports whether a function has a parameter of type
// func(string) string or func(string) (string, bool), envvar.Lookup, or
// *envvar.Reader (a helper reading settings with its caller's Reader).
func takesLookup(typ *ast.FuncType) bool {
	if typ.Params == nil {
		return false
	}
	for _, p := range typ.Params.List {
		if sel, ok := p.Type.(*ast.SelectorExpr); ok && isIdent(sel.X, "envvar") && sel.Sel.Name == "Lookup" {
			return true
		}
		if star, ok := p.Type.(*ast.StarExpr); ok {
			if sel, ok := star.X.(*ast.SelectorExpr); ok && isIdent(sel.X, "envvar") && sel.Sel.Name == "Reader" {
				return true
			}
		}
		ft, ok := p.Type.(*ast.FuncType)
		if !ok || ft.Params == nil || len(ft.Params.List) != 1 || !isIdent(ft.Params.List[0].Type, "string") {
			continue
		}
		if ft.Results == nil {
			continue
		}
		var results []ast.Expr
		for _, r := range ft.Results.List {
			n := len(r.Names)
			if n == 0 {
				n = 1
			}
			for range n {
				results = append(results, r.Type)
			}
		}
		switch {
		case len(results) == 1 && isIdent(results[0], "string"):
			return true
		case len(results) == 2 && isIdent(results[0], "string") && isIdent(results[1], "bool"):
			return true
		}
	}
	return false
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
