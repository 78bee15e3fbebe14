package trace_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/trace"
)

type maskCase struct {
	name  string
	opts  trace.MaskOptions
	input string
	want  string
}

var maskCases = []maskCase{
	{"no secrets", trace.MaskOptions{Phrases: []string{"s3cr3t-value"}}, "hello world\n", "hello world\n"},
	{"phrase", trace.MaskOptions{Phrases: []string{"s3cr3t-value"}}, "pw=s3cr3t-value;", "pw=[MASKED];"},
	{"phrase twice", trace.MaskOptions{Phrases: []string{"hunter22"}}, "hunter22hunter22 hunter2", "[MASKED][MASKED] hunter2"},
	{"longest first", trace.MaskOptions{Phrases: []string{"abc", "abcdef"}}, "xabcdefx abcx", "x[MASKED]x [MASKED]x"},
	{"overlapping, union", trace.MaskOptions{Phrases: []string{"cdef", "abcd"}}, "abcdef", "[MASKED]"},
	{"overlapping, neither inside the other", trace.MaskOptions{Phrases: []string{"abcdef", "defghi"}}, "xabcdefghiy", "x[MASKED]y"},
	{"overlapping, chain of three", trace.MaskOptions{Phrases: []string{"abcd", "cdef", "efgh"}}, "-abcdefgh-", "-[MASKED]-"},
	{"overlapping occurrences of one phrase", trace.MaskOptions{Phrases: []string{"abab"}}, "abababx", "[MASKED]x"},
	{"overlap joins touching ones", trace.MaskOptions{Phrases: []string{"aaaa", "bbbb", "aabb"}}, "aaaabbbb", "[MASKED]"},
	{"trimmed", trace.MaskOptions{Phrases: []string{"  topsecret\n"}}, "a topsecret b", "a [MASKED] b"},
	{"empty and blank ignored", trace.MaskOptions{Phrases: []string{"", "  ", "\t"}}, "a  b\t", "a  b\t"},
	{"duplicates", trace.MaskOptions{Phrases: []string{"dupdup", "dupdup", " dupdup"}}, "dupdupdup", "[MASKED]"},
	{"single byte phrase", trace.MaskOptions{Phrases: []string{"x"}}, "axbx", "a[MASKED]b[MASKED]"},
	{"phrase at end", trace.MaskOptions{Phrases: []string{"password1"}}, "the end password1", "the end [MASKED]"},
	{"partial phrase at end", trace.MaskOptions{Phrases: []string{"password1"}}, "the end passwor", "the end passwor"},
	{"binary phrase", trace.MaskOptions{Phrases: []string{"\x00\xff\x01"}}, "a\x00\xff\x01b", "a[MASKED]b"},

	{"url private_token", trace.MaskOptions{}, "GET https://h/api?private_token=abc123&x=1 ok", "GET https://h/api?private_token=[MASKED]&x=1 ok"},
	{"url key case-insensitive", trace.MaskOptions{}, "u?PRIVATE_TOKEN=abc", "u?PRIVATE_TOKEN=[MASKED]"},
	{"url amz after ampersand", trace.MaskOptions{}, "s3?a=1&X-Amz-Signature=deadbeef&X-Amz-Credential=AK%2F1 done", "s3?a=1&X-Amz-Signature=[MASKED]&X-Amz-Credential=[MASKED] done"},
	{"url amz security token", trace.MaskOptions{}, "?x-amz-security-token=Zm9v#frag", "?x-amz-security-token=[MASKED]#frag"},
	{"url rss and authenticity", trace.MaskOptions{}, "?rss_token=a&authenticity_token=b", "?rss_token=[MASKED]&authenticity_token=[MASKED]"},
	{"url key without separator", trace.MaskOptions{}, "private_token=abc", "private_token=abc"},
	{"url empty value", trace.MaskOptions{}, "?private_token=&x=1", "?private_token=&x=1"},
	{"url value at end", trace.MaskOptions{}, "?private_token=abc", "?private_token=[MASKED]"},
	{"url other key", trace.MaskOptions{}, "?private_tokens=abc", "?private_tokens=abc"},

	{"token glpat", trace.MaskOptions{}, "token glpat-abc123 used", "token glpat-[MASKED] used"},
	{"token run chars", trace.MaskOptions{}, "glpat-aZ09._=-x/rest", "glpat-[MASKED]/rest"},
	{"token glrtr over glrt", trace.MaskOptions{}, "glrtr-xyz glrt-abc", "glrtr-[MASKED] glrt-[MASKED]"},
	{"token every default", trace.MaskOptions{},
		"gloas-1 gldt-2 glcbt-3 glptt-4 glft-5 glimt-6 glagent-7 glsoat-8 glffct-9 _gitlab_session=10 gltok-11",
		"gloas-[MASKED] gldt-[MASKED] glcbt-[MASKED] glptt-[MASKED] glft-[MASKED] glimt-[MASKED] glagent-[MASKED] glsoat-[MASKED] glffct-[MASKED] _gitlab_session=[MASKED] gltok-[MASKED]"},
	{"token inside word", trace.MaskOptions{}, "xglpat-abc", "xglpat-[MASKED]"},
	{"token prefix alone", trace.MaskOptions{}, "glpat- x glpat-", "glpat- x glpat-"},
	{"token prefix then newline", trace.MaskOptions{}, "glpat-\n", "glpat-\n"},
	{"extra prefix", trace.MaskOptions{TokenPrefixes: []string{"acme_"}}, "acme_secret1 ok", "acme_[MASKED] ok"},
	{"at most 15 prefixes", trace.MaskOptions{TokenPrefixes: []string{"one_", "two_"}}, "one_a two_b", "one_[MASKED] two_b"},
	{"duplicate extra does not count", trace.MaskOptions{TokenPrefixes: []string{"glpat-", "one_"}}, "one_a", "one_[MASKED]"},
	{"token in url value", trace.MaskOptions{}, "?private_token=glpat-abc x", "?private_token=[MASKED] x"},

	{"phrase then token", trace.MaskOptions{Phrases: []string{"mysecretvalue"}}, "glpat-mysecretvalue glpat-other", "glpat-[MASKED] glpat-[MASKED]"},
	{"phrase inside url", trace.MaskOptions{Phrases: []string{"supersecret"}}, "a?b=supersecret&c", "a?b=[MASKED]&c"},
	{"phrase covering part of a token", trace.MaskOptions{Phrases: []string{"abc"}}, "glpat-abcdef x", "glpat-[MASKED] x"},
	{"phrase reaching past a token", trace.MaskOptions{Phrases: []string{"yz tail"}}, "glpat-xyz tail end", "glpat-[MASKED] end"},
	{"phrase then token prefix", trace.MaskOptions{Phrases: []string{"secret"}}, "secretglpat-xyz", "[MASKED]glpat-[MASKED]"},
	{"phrase ending inside a token prefix", trace.MaskOptions{Phrases: []string{"key=abcgl"}}, "key=abcglpat-xyz tail", "[MASKED]pat-[MASKED] tail"},
	{"phrase covering a token prefix", trace.MaskOptions{Phrases: []string{"xglpat"}}, "xglpat-abc", "[MASKED]-[MASKED]"},
	{"phrase covering a url key", trace.MaskOptions{Phrases: []string{"priv"}}, "u?private_token=abc&x", "u?[MASKED]ate_token=[MASKED]&x"},
	{"phrase from a url value on", trace.MaskOptions{Phrases: []string{"c&x=1"}}, "u?private_token=abc&x=1 y", "u?private_token=[MASKED] y"},
	{"prefix inside a prefix", trace.MaskOptions{TokenPrefixes: []string{"gl"}}, "glpat-abc x", "gl[MASKED] x"},
	{"token ends inside a url value", trace.MaskOptions{}, "?private_token=glpat-abc/def x", "?private_token=[MASKED] x"},
	{"job token without prefix", trace.MaskOptionsFor(&gitlab.Job{Token: "abcdefgh12345"}), "git clone https://gitlab-ci-token:abcdefgh12345@h/p", "git clone https://gitlab-ci-token:[MASKED]@h/p"},
}

func maskAll(t testing.TB, opts trace.MaskOptions, writes ...string) string {
	t.Helper()
	var out bytes.Buffer
	m := trace.NewMasker(&out, opts)
	for _, w := range writes {
		n, err := m.Write([]byte(w))
		if err != nil || n != len(w) {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
		}
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return out.String()
}

func TestMasker(t *testing.T) {
	for _, tc := range maskCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := maskAll(t, tc.opts, tc.input); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMaskerEverySplit(t *testing.T) {
	for _, tc := range maskCases {
		t.Run(tc.name, func(t *testing.T) {
			for k := 0; k <= len(tc.input); k++ {
				if got := maskAll(t, tc.opts, tc.input[:k], tc.input[k:]); got != tc.want {
					t.Errorf("split at %d: got %q, want %q", k, got, tc.want)
				}
			}
			for k := 0; k <= len(tc.input); k++ {
				for l := k; l <= len(tc.input); l++ {
					if got := maskAll(t, tc.opts, tc.input[:k], tc.input[k:l], tc.input[l:]); got != tc.want {
						t.Errorf("split at %d and %d: got %q, want %q", k, l, got, tc.want)
					}
				}
			}
			var bytewise []string
			for i := range len(tc.input) {
				bytewise = append(bytewise, tc.input[i:i+1])
			}
			if got := maskAll(t, tc.opts, bytewise...); got != tc.want {
				t.Errorf("byte by byte: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMaskerHoldsBackOnlyPossibleMatches(t *testing.T) {
	var out bytes.Buffer
	m := trace.NewMasker(&out, trace.MaskOptions{Phrases: []string{"secretvalue"}})
	if _, err := m.Write([]byte("line one\nvalue: secr")); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "line one\nvalue: "; got != want {
		t.Errorf("before flush: got %q, want %q", got, want)
	}
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "line one\nvalue: secr"; got != want {
		t.Errorf("after flush: got %q, want %q", got, want)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Write([]byte("x")); err == nil {
		t.Errorf("Write after Close: got nil error, want an error")
	}
}

func TestMaskOptionsFor(t *testing.T) {
	job := &gitlab.Job{
		Token: "glcbt-jobtoken",
		Variables: gitlab.Variables{
			{Key: "A", Value: "visible"},
			{Key: "B", Value: "hidden-one", Masked: true},
		},
		Features: gitlab.JobFeatures{TokenMaskPrefixes: []string{"acme_"}},
	}
	got := maskAll(t, trace.MaskOptionsFor(job), "visible hidden-one glcbt-jobtoken acme_x")
	if want := "visible [MASKED] [MASKED] acme_[MASKED]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// splitBy cuts s at the positions derived from cuts.
func splitBy(s string, cuts []byte) []string {
	var parts []string
	for _, c := range cuts {
		if len(s) == 0 {
			break
		}
		k := int(c) % (len(s) + 1)
		parts = append(parts, s[:k])
		s = s[k:]
	}
	return append(parts, s)
}

// TestMaskerMatchesReference checks the Masker against maskReference on
// inputs dense with overlapping phrases, token prefixes and URL parameters,
// each written in a random chunking.
func TestMaskerMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	pieces := []string{"a", "b", "ab", "gl", "pat-", "glpat-", "glrt-", "?", "&", "private_token=", "X-Amz-Signature=", "=", "-", " ", "/", "\n", "x"}
	gen := func(n int) string {
		var sb strings.Builder
		for range n {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		return sb.String()
	}
	for range 3000 {
		input := gen(r.IntN(24))
		var opts trace.MaskOptions
		for range r.IntN(4) {
			if len(input) > 0 && r.IntN(3) > 0 {
				i := r.IntN(len(input))
				opts.Phrases = append(opts.Phrases, input[i:i+1+r.IntN(min(8, len(input)-i))])
			} else {
				opts.Phrases = append(opts.Phrases, gen(1+r.IntN(3)))
			}
		}
		if r.IntN(4) == 0 {
			opts.TokenPrefixes = []string{gen(1)}
		}
		cuts := make([]byte, r.IntN(6))
		for i := range cuts {
			cuts[i] = byte(r.IntN(256))
		}
		want := maskReference(opts, input)
		if got := maskAll(t, opts, splitBy(input, cuts)...); got != want {
			t.Fatalf("input %q, phrases %q, prefixes %q, writes %q:\ngot  %q\nwant %q",
				input, opts.Phrases, opts.TokenPrefixes, splitBy(input, cuts), got, want)
		}
	}
}

// TestMaskerDropsLongRunsAsTheyCome writes a token far longer than any
// buffer: it is masked as it comes, not held back.
func TestMaskerDropsLongRunsAsTheyCome(t *testing.T) {
	var out bytes.Buffer
	m := trace.NewMasker(&out, trace.MaskOptions{})
	if _, err := m.Write([]byte("token glpat-")); err != nil {
		t.Fatal(err)
	}
	run := bytes.Repeat([]byte("A1"), 100<<10)
	for range 5 {
		if _, err := m.Write(run); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := out.String(), "token glpat-[MASKED]"; got != want {
		t.Fatalf("before the token ends: got %q, want %q", got, want)
	}
	if _, err := m.Write([]byte(" done")); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "token glpat-[MASKED] done"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// maskReference is what a Masker must write for input, found the slow and
// obvious way: mark every byte of every occurrence, then write each run of
// overlapping occurrences as one [MASKED].
func maskReference(opts trace.MaskOptions, input string) string {
	type span struct{ start, end int }
	var spans []span
	run := func(start int, in func(byte) bool) {
		end := start
		for end < len(input) && in(input[end]) {
			end++
		}
		if end > start {
			spans = append(spans, span{start, end})
		}
	}
	var prefixes []string
	for _, p := range append(slices.Clone(trace.DefaultTokenPrefixes), opts.TokenPrefixes...) {
		if p != "" && !slices.Contains(prefixes, p) && len(prefixes) < trace.MaxTokenPrefixes {
			prefixes = append(prefixes, p)
		}
	}
	for i := range len(input) {
		for _, p := range opts.Phrases {
			if p = strings.TrimSpace(p); p != "" && strings.HasPrefix(input[i:], p) {
				spans = append(spans, span{i, i + len(p)})
			}
		}
		for _, p := range prefixes {
			if strings.HasPrefix(input[i:], p) {
				run(i+len(p), isTokenByte)
			}
		}
		if input[i] == '?' || input[i] == '&' {
			for _, k := range trace.URLParamKeys {
				k += "="
				if len(input) >= i+1+len(k) && strings.EqualFold(input[i+1:i+1+len(k)], k) {
					run(i+1+len(k), isURLValueByte)
				}
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && s.start < merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, s.end)
			continue
		}
		merged = append(merged, s)
	}
	var sb strings.Builder
	pos := 0
	for _, s := range merged {
		sb.WriteString(input[pos:s.start])
		sb.WriteString(trace.Masked)
		pos = s.end
	}
	sb.WriteString(input[pos:])
	return sb.String()
}

func FuzzMasker(f *testing.F) {
	f.Add("pw=s3cr3t glpat-abc ?private_token=x", "s3cr3t", "glpat-abc", "", []byte{3, 7, 1})
	f.Add("aaaaabaaaab", "aab", "aaaab", "", []byte{1, 1, 1, 1})
	f.Add("xx?X-AMZ-SIGNATURE=1&rss_token=2", "", " xx ", "", []byte{2, 9})
	f.Add("abcdefghi key=abcglpat-xyz", "abcdef", "defghi", "abc", []byte{4, 4, 4})
	f.Fuzz(func(t *testing.T, input, p1, p2, prefix string, cuts []byte) {
		opts := trace.MaskOptions{Phrases: []string{p1, p2}, TokenPrefixes: []string{prefix}}
		whole := maskAll(t, opts, input)
		split := maskAll(t, opts, splitBy(input, cuts)...)
		if split != whole {
			t.Fatalf("split writes: got %q, want %q (masked at once)", split, whole)
		}
		if want := maskReference(opts, input); whole != want {
			t.Fatalf("got %q, want %q", whole, want)
		}
		for _, p := range []string{strings.TrimSpace(p1), strings.TrimSpace(p2)} {
			if p == "" {
				continue
			}
			for _, piece := range strings.Split(whole, trace.Masked) {
				if strings.Contains(piece, p) {
					t.Fatalf("output %q still contains %q", whole, p)
				}
			}
		}
		for _, prefix := range trace.DefaultTokenPrefixes {
			rest := whole
			for {
				i := strings.Index(rest, prefix)
				if i < 0 {
					break
				}
				rest = rest[i+len(prefix):]
				if rest != "" && !strings.HasPrefix(rest, trace.Masked) && isTokenByte(rest[0]) {
					t.Fatalf("output %q has %q followed by clear text", whole, prefix)
				}
			}
		}
	})
}

func isTokenByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		c == '.' || c == '_' || c == '=' || c == '-'
}

func isURLValueByte(c byte) bool {
	return c > ' ' && c != 0x7f && !strings.ContainsRune("&#\"'<>`", rune(c))
}
