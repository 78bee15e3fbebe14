package trace_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"gitlab-serverless-runner/pkg/trace"
)

func limitAll(t *testing.T, max int64, writes ...string) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	l := trace.NewLimit(&out, max)
	for _, w := range writes {
		n, err := l.Write([]byte(w))
		if err != nil || n != len(w) {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
		}
	}
	if err := l.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return out.String(), l.Exceeded()
}

func TestLimit(t *testing.T) {
	notice := trace.LimitNotice(10)
	tests := []struct {
		name     string
		max      int64
		input    string
		want     string
		exceeded bool
	}{
		{"under", 10, "hello", "hello", false},
		{"exactly", 10, "0123456789", "0123456789", false},
		{"over", 10, "0123456789abc", "0123456789" + notice, true},
		{"does not split a character", 10, "012345678é", "012345678" + notice, true},
		{"three-byte character at the edge", 10, "01234567€", "01234567" + notice, true},
		{"character fits exactly", 10, "01234567é", "01234567é", false},
		{"invalid byte replaced", 10, "a\xffb", "a\uFFFDb", false},
		{"truncated sequence replaced", 10, "a\xe2\x82b", "a\uFFFD\uFFFDb", false},
		{"truncated sequence at end", 10, "ab\xe2\x82", "ab\uFFFD\uFFFD", false},
		{"replacement counts toward limit", 10, "\xff\xff\xff\xff", "\uFFFD\uFFFD\uFFFD" + notice, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k := 0; k <= len(tc.input); k++ {
				got, exceeded := limitAll(t, tc.max, tc.input[:k], tc.input[k:])
				if got != tc.want {
					t.Errorf("split at %d: got %q, want %q", k, got, tc.want)
				}
				if exceeded != tc.exceeded {
					t.Errorf("split at %d: Exceeded() = %v, want %v", k, exceeded, tc.exceeded)
				}
			}
		})
	}
}

func TestLimitNoticeOnceThenDrops(t *testing.T) {
	got, _ := limitAll(t, 5, "abc", "def", "ghi", "jkl")
	if want := "abcde" + trace.LimitNotice(5); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if n := strings.Count(got, "exceeded limit"); n != 1 {
		t.Errorf("notice written %d times, want 1", n)
	}
}

func TestLimitNoticeText(t *testing.T) {
	got := trace.LimitNotice(4194304)
	for _, want := range []string{
		trace.ANSIBoldYellow + "Job's log exceeded limit of 4194304 bytes.",
		"Job execution will continue but no more output will be collected." + trace.ANSIReset,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("notice %q does not contain %q", got, want)
		}
	}
}

func TestLimitDefault(t *testing.T) {
	var out bytes.Buffer
	l := trace.NewLimit(&out, 0)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for range 5 {
		if _, err := l.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := out.Len(), trace.DefaultLimit+len(trace.LimitNotice(trace.DefaultLimit)); got != want {
		t.Errorf("got %d bytes, want %d", got, want)
	}
	if !utf8.Valid(out.Bytes()) {
		t.Errorf("output is not valid UTF-8")
	}
}
