// Package samtemplate owns the checks that hold the deployment together:
// it loads the SAM template (template.yaml) both as a generic tree, with
// intrinsic functions in their long form, and as goformation's typed model;
// it lists the references the template makes and those that resolve to
// nothing; and it finds which environment variables a function's Go code
// reads, so that tests can hold the template, the Makefile and the code to
// one another; and it makes the clean copy of the repository on which the
// tests run AWS's own tools (cfn-lint, sam validate, sam build), which
// check what these checks do not: the template as CloudFormation and the
// SAM translator read it, and the real builds.
//
// goformation does not model every property SAM accepts. Load removes the
// properties listed in Unmodelled before typed parsing and keeps them in
// Template.Unmodelled, where callers check them.
package samtemplate

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// Unmodelled lists, per resource type, the properties goformation v7 does
// not know and rejects: Load strips them before typed parsing.
var Unmodelled = map[string][]string{
	"AWS::Serverless::Function":     {"LoggingConfig", "TenancyConfig"},
	"AWS::Serverless::LayerVersion": {"CompatibleArchitectures"},
}

// Template is a loaded SAM template.
type Template struct {
	// Raw is the whole template as JSON-like values (maps, slices,
	// strings, float64, bools) with intrinsic functions in long form:
	// {"Ref": "X"}, {"Fn::GetAtt": ["R", "Arn"]}, {"Fn::Sub": "..."}.
	Raw map[string]any
	// Typed is goformation's model of the template without the Unmodelled
	// properties, with the parameters' defaults. Intrinsic functions are
	// resolved the goformation way: Ref of a parameter gives its default,
	// of a resource nothing; conditions are evaluated.
	Typed *cloudformation.Template
	// Unmodelled holds, per logical id, the properties stripped before
	// typed parsing.
	Unmodelled map[string]map[string]any
}

// Load reads and parses the template at path.
func Load(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: read template: %w", err)
	}
	return Parse(data)
}

// Parse parses a YAML template.
func Parse(data []byte) (*Template, error) {
	long, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		return nil, fmt.Errorf("samtemplate: parse YAML: %w", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(long, &raw); err != nil {
		return nil, fmt.Errorf("samtemplate: decode template: %w", err)
	}
	// A second copy, for goformation, without the unmodelled properties.
	var stripped map[string]any
	if err := json.Unmarshal(long, &stripped); err != nil {
		return nil, fmt.Errorf("samtemplate: decode template: %w", err)
	}
	t := &Template{Raw: raw, Unmodelled: map[string]map[string]any{}}
	resources, _ := stripped["Resources"].(map[string]any)
	for id, r := range resources {
		res, _ := r.(map[string]any)
		if _, ok := res["Condition"]; ok {
			// goformation turns a resource whose condition is false
			// into a bool it cannot parse: Typed leaves it out.
			delete(resources, id)
			continue
		}
		typ, _ := res["Type"].(string)
		props, _ := res["Properties"].(map[string]any)
		// CloudFormation's Ref of a Number parameter is a string, which
		// environment variables need; goformation gives the number.
		if vars, ok := Path(props, "Environment", "Variables").(map[string]any); ok {
			for k, v := range vars {
				if p := RefName(v); p != "" {
					vars[k] = map[string]any{"Fn::Sub": "${" + p + "}"}
				}
			}
		}
		for _, name := range Unmodelled[typ] {
			if v, ok := props[name]; ok {
				if t.Unmodelled[id] == nil {
					t.Unmodelled[id] = map[string]any{}
				}
				t.Unmodelled[id][name] = v
				delete(props, name)
			}
		}
	}
	js, err := json.Marshal(stripped)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: encode template: %w", err)
	}
	typed, err := goformation.ParseJSONWithOptions(js, &intrinsics.ProcessorOptions{EvaluateConditions: true})
	if err != nil {
		return nil, fmt.Errorf("samtemplate: parse with goformation: %w", err)
	}
	t.Typed = typed
	return t, nil
}

// Section returns a top-level section (Parameters, Resources, Conditions,
// Outputs) as a map; nil if absent.
func (t *Template) Section(name string) map[string]any {
	m, _ := t.Raw[name].(map[string]any)
	return m
}

// Resource returns the raw resource with the given logical id.
func (t *Template) Resource(id string) (Resource, bool) {
	r, ok := t.Section("Resources")[id].(map[string]any)
	if !ok {
		return Resource{}, false
	}
	return toResource(id, r), true
}

// Resources returns the raw resources of type typ ("" for all), sorted by
// logical id.
func (t *Template) Resources(typ string) []Resource {
	var out []Resource
	for id, r := range t.Section("Resources") {
		m, _ := r.(map[string]any)
		res := toResource(id, m)
		if typ == "" || res.Type == typ {
			out = append(out, res)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Resource is one raw resource.
type Resource struct {
	ID         string
	Type       string
	Properties map[string]any
	Metadata   map[string]any
}

func toResource(id string, m map[string]any) Resource {
	r := Resource{ID: id}
	r.Type, _ = m["Type"].(string)
	r.Properties, _ = m["Properties"].(map[string]any)
	r.Metadata, _ = m["Metadata"].(map[string]any)
	return r
}

// Pseudo are CloudFormation's pseudo parameters.
var Pseudo = []string{
	"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
	"AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}

// Reference is one use of a name by an intrinsic function or DependsOn.
type Reference struct {
	// Kind is "Ref", "Fn::GetAtt", "Fn::Sub", "Condition" or "DependsOn".
	Kind string
	// Name is the referenced logical id, parameter, pseudo parameter or
	// condition (for Fn::GetAtt and ${X.Attr}, the part before the dot).
	Name string
	// Path says where the reference is, e.g. "Resources.WebFunction.Properties.Policies[2]".
	Path string
}

func (r Reference) String() string { return fmt.Sprintf("%s %s at %s", r.Kind, r.Name, r.Path) }

var subVar = regexp.MustCompile(`\$\{([^}!][^}]*)\}`)

// References lists every reference the template makes.
func (t *Template) References() []Reference {
	var refs []Reference
	var walk func(v any, path string, subVars map[string]bool)
	walk = func(v any, path string, subVars map[string]bool) {
		switch v := v.(type) {
		case []any:
			for i, e := range v {
				walk(e, fmt.Sprintf("%s[%d]", path, i), subVars)
			}
		case map[string]any:
			if len(v) == 1 {
				for k, arg := range v {
					switch k {
					case "Ref":
						if s, ok := arg.(string); ok {
							refs = append(refs, Reference{"Ref", s, path})
							return
						}
					case "Fn::GetAtt":
						var name string
						switch a := arg.(type) {
						case string:
							name, _, _ = strings.Cut(a, ".")
						case []any:
							if len(a) > 0 {
								name, _ = a[0].(string)
							}
						}
						refs = append(refs, Reference{"Fn::GetAtt", name, path})
						return
					case "Fn::Sub":
						str, vars := "", map[string]bool{}
						switch a := arg.(type) {
						case string:
							str = a
						case []any:
							if len(a) > 0 {
								str, _ = a[0].(string)
							}
							if len(a) > 1 {
								if m, ok := a[1].(map[string]any); ok {
									for name, val := range m {
										vars[name] = true
										walk(val, path+".Fn::Sub."+name, subVars)
									}
								}
							}
						}
						for _, m := range subVar.FindAllStringSubmatch(str, -1) {
							name, _, _ := strings.Cut(m[1], ".")
							if !vars[name] {
								refs = append(refs, Reference{"Fn::Sub", name, path})
							}
						}
						return
					case "Fn::If":
						if a, ok := arg.([]any); ok && len(a) == 3 {
							if c, ok := a[0].(string); ok {
								refs = append(refs, Reference{"Condition", c, path})
							}
							walk(a[1], path+".Fn::If[1]", subVars)
							walk(a[2], path+".Fn::If[2]", subVars)
							return
						}
					case "Condition":
						if c, ok := arg.(string); ok && strings.HasPrefix(path, "Conditions.") {
							refs = append(refs, Reference{"Condition", c, path})
							return
						}
					}
				}
			}
			for k, e := range v {
				walk(e, path+"."+k, subVars)
			}
		}
	}
	for id, r := range t.Section("Resources") {
		res, _ := r.(map[string]any)
		path := "Resources." + id
		if c, ok := res["Condition"].(string); ok {
			refs = append(refs, Reference{"Condition", c, path + ".Condition"})
		}
		switch d := res["DependsOn"].(type) {
		case string:
			refs = append(refs, Reference{"DependsOn", d, path + ".DependsOn"})
		case []any:
			for _, e := range d {
				if s, ok := e.(string); ok {
					refs = append(refs, Reference{"DependsOn", s, path + ".DependsOn"})
				}
			}
		}
		walk(res["Properties"], path+".Properties", nil)
		walk(res["Metadata"], path+".Metadata", nil)
	}
	for _, section := range []string{"Outputs", "Conditions"} {
		for name, v := range t.Section(section) {
			walk(v, section+"."+name, nil)
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Path+refs[i].Name < refs[j].Path+refs[j].Name })
	return refs
}

// Unresolved returns the references that name nothing: a Ref or Fn::Sub
// variable that is neither a parameter, a resource nor a pseudo parameter,
// a Fn::GetAtt or DependsOn of a missing resource, an unknown condition.
func (t *Template) Unresolved() []Reference {
	params, resources, conditions := t.Section("Parameters"), t.Section("Resources"), t.Section("Conditions")
	pseudo := map[string]bool{}
	for _, p := range Pseudo {
		pseudo[p] = true
	}
	var bad []Reference
	for _, r := range t.References() {
		_, isParam := params[r.Name]
		_, isRes := resources[r.Name]
		isRes = isRes || t.samGenerated(r.Name)
		_, isCond := conditions[r.Name]
		ok := false
		switch r.Kind {
		case "Ref", "Fn::Sub":
			ok = isParam || isRes || pseudo[r.Name]
		case "Fn::GetAtt", "DependsOn":
			ok = isRes
		case "Condition":
			ok = isCond
		}
		if !ok {
			bad = append(bad, r)
		}
	}
	return bad
}

// samGenerated reports whether name is a resource the SAM transform makes
// and lets a template refer to: the execution role "<Id>Role" of a
// function Id that names no Role of its own.
func (t *Template) samGenerated(name string) bool {
	id, ok := strings.CutSuffix(name, "Role")
	if !ok {
		return false
	}
	fn, ok := t.Resource(id)
	if !ok || fn.Type != "AWS::Serverless::Function" {
		return false
	}
	_, hasRole := fn.Properties["Role"]
	return !hasRole
}

// IsRef reports whether v is {"Ref": name}.
func IsRef(v any, name string) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 1 && m["Ref"] == name
}

// RefName returns the name of {"Ref": name}, "" for anything else.
func RefName(v any) string {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return ""
	}
	s, _ := m["Ref"].(string)
	return s
}

// GetAtt returns the resource and attribute of a Fn::GetAtt, "" for
// anything else.
func GetAtt(v any) (resource, attribute string) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", ""
	}
	switch a := m["Fn::GetAtt"].(type) {
	case string:
		resource, attribute, _ = strings.Cut(a, ".")
	case []any:
		if len(a) == 2 {
			resource, _ = a[0].(string)
			attribute, _ = a[1].(string)
		}
	}
	return resource, attribute
}

// Path walks nested maps of v along keys; nil when a key is missing.
func Path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
