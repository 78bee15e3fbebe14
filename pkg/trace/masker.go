package trace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Masked is what replaces a secret in the trace.
const Masked = "[MASKED]"

// MaxTokenPrefixes is the most token prefixes a Masker uses, defaults
// included; extra prefixes beyond it are ignored, as gitlab-runner does.
const MaxTokenPrefixes = 15

// DefaultTokenPrefixes are the GitLab token formats always masked: the text
// after the prefix is replaced, the prefix is kept.
var DefaultTokenPrefixes = []string{
	"glpat-", "gloas-", "gldt-", "glrt-", "glcbt-", "glrtr-", "glptt-",
	"glft-", "glimt-", "glagent-", "glsoat-", "glffct-", "_gitlab_session=",
	"gltok-",
}

// URLParamKeys are the URL query parameters whose values are masked when
// they follow '?' or '&' (the key is matched case-insensitively).
var URLParamKeys = []string{
	"private_token", "authenticity_token", "rss_token",
	"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
}

// chunkSize bounds how much of one Write is processed at a time, so a huge
// Write does not grow the Masker's scratch buffers.
const chunkSize = 64 << 10

// MaskOptions says what a Masker hides.
type MaskOptions struct {
	// Phrases are replaced by [MASKED] wherever they occur. Each is trimmed
	// of surrounding white space; empty phrases and duplicates are ignored.
	Phrases []string
	// TokenPrefixes are added to DefaultTokenPrefixes (MaxTokenPrefixes in
	// all).
	TokenPrefixes []string
}

// MaskOptionsFor returns what must be masked in job's trace: the values of
// its masked variables, its job token and the token prefixes GitLab asks
// for in features.token_mask_prefixes.
func MaskOptionsFor(job *gitlab.Job) MaskOptions {
	var o MaskOptions
	for _, v := range job.Variables {
		if v.Masked {
			o.Phrases = append(o.Phrases, v.Value)
		}
	}
	if job.Token != "" {
		o.Phrases = append(o.Phrases, job.Token)
	}
	o.TokenPrefixes = append(o.TokenPrefixes, job.Features.TokenMaskPrefixes...)
	return o
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("trace: write after close")

// Masker is an io.Writer that hides secrets before passing bytes on. It
// applies, in order, phrase masking (longest phrase first), URL query
// parameter masking and token prefix masking. Matches are found however the
// input is split across Write calls: the Masker holds back the few bytes
// that could still start a match (at most the longest phrase's length minus
// one for phrases) until the next Write, Flush or Close decides them.
//
// The output for a stream does not depend on how it was split into writes.
// A Masker is not safe for concurrent use.
type Masker struct {
	w       io.Writer
	phrases *phraseStage
	san     *sanitizeStage
	out1    []byte
	out2    []byte
	err     error
	closed  bool
}

// NewMasker returns a Masker writing to w.
func NewMasker(w io.Writer, opts MaskOptions) *Masker {
	return &Masker{
		w:       w,
		phrases: newPhraseStage(opts.Phrases),
		san:     newSanitizeStage(opts.TokenPrefixes),
	}
}

// Write masks p and writes what is decided to the underlying writer. It
// returns len(p) unless the underlying writer failed.
func (m *Masker) Write(p []byte) (int, error) {
	if m.closed {
		return 0, ErrClosed
	}
	if m.err != nil {
		return 0, m.err
	}
	n := len(p)
	for len(p) > 0 {
		c := p[:min(len(p), chunkSize)]
		p = p[len(c):]
		if err := m.process(c, false); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Flush releases the held-back bytes as if the stream ended here: a secret
// split by a Flush is not recognised. Call it at the end of the output.
func (m *Masker) Flush() error {
	if m.closed {
		return ErrClosed
	}
	if m.err != nil {
		return m.err
	}
	return m.process(nil, true)
}

// Close flushes the Masker; later writes fail with ErrClosed. It does not
// close the underlying writer.
func (m *Masker) Close() error {
	if m.closed {
		return nil
	}
	err := m.Flush()
	m.closed = true
	return err
}

func (m *Masker) process(p []byte, final bool) error {
	b := p
	if m.phrases != nil {
		m.out1 = m.phrases.process(m.out1[:0], p, final)
		b = m.out1
	}
	m.out2 = m.san.process(m.out2[:0], b, final)
	if len(m.out2) == 0 {
		return nil
	}
	if _, err := m.w.Write(m.out2); err != nil {
		m.err = fmt.Errorf("trace: write masked output: %w", err)
		return m.err
	}
	return nil
}

// pairSet is a set of two-byte sequences, used to find match candidates
// with one lookup per input byte.
type pairSet [1024]uint64

func (s *pairSet) add(a, b byte) {
	k := uint16(a)<<8 | uint16(b)
	s[k>>6] |= 1 << (k & 63)
}

func (s *pairSet) addFirst(a byte) {
	for b := range 256 {
		s.add(a, byte(b))
	}
}

// scan returns the first index i in buf[from:] where buf[i], buf[i+1] is in
// the set or, for the last byte, first[buf[i]] is true; len(buf) if none.
func (s *pairSet) scan(buf []byte, from int, first *[256]bool) int {
	n := len(buf)
	if from >= n {
		return n
	}
	rest := buf[from+1:]
	prev := uint16(buf[from]) << 8
	for j, c := range rest {
		k := prev | uint16(c)
		if s[k>>6&1023]&(1<<(k&63)) != 0 {
			return from + j
		}
		prev = uint16(c) << 8
	}
	if first[buf[n-1]] {
		return n - 1
	}
	return n
}

// literalIndex finds where literal strings may start: the strings by
// their first byte, longest first, and the byte pairs that begin them, for
// pairSet.scan.
type literalIndex struct {
	byFirst [256][][]byte // longest first
	first   [256]bool
	pairs   pairSet
}

// addLongestFirst adds the strings of list (none empty), which it sorts
// longest first (stable, so equal lengths keep their order).
func (x *literalIndex) addLongestFirst(list []string) {
	slices.SortStableFunc(list, func(a, b string) int { return len(b) - len(a) })
	for _, p := range list {
		x.byFirst[p[0]] = append(x.byFirst[p[0]], []byte(p))
		x.first[p[0]] = true
		if len(p) == 1 {
			x.pairs.addFirst(p[0])
		} else {
			x.pairs.add(p[0], p[1])
		}
	}
}

// holdBuffer joins the bytes held back from the previous call with new ones.
type holdBuffer struct {
	held    []byte
	scratch []byte
}

func (h *holdBuffer) join(src []byte) []byte {
	if len(h.held) == 0 {
		return src
	}
	h.scratch = append(append(h.scratch[:0], h.held...), src...)
	return h.scratch
}

func (h *holdBuffer) hold(b []byte) {
	h.held = append(h.held[:0], b...)
}

// phraseStage replaces whole phrases, leftmost first and, among phrases
// starting at the same byte, longest first.
type phraseStage struct {
	holdBuffer
	literalIndex
}

func newPhraseStage(phrases []string) *phraseStage {
	var list []string
	for _, p := range phrases {
		p = strings.TrimSpace(p)
		if p != "" && !slices.Contains(list, p) {
			list = append(list, p)
		}
	}
	if len(list) == 0 {
		return nil
	}
	s := &phraseStage{}
	s.addLongestFirst(list)
	return s
}

// matchAt returns the length of the phrase at buf[i:], or pending when a
// longer phrase could still match once more bytes arrive.
func (s *phraseStage) matchAt(buf []byte, i int, final bool) (n int, pending bool) {
	rest := buf[i:]
	for _, ph := range s.byFirst[buf[i]] {
		if len(ph) <= len(rest) {
			if bytes.Equal(rest[:len(ph)], ph) {
				return len(ph), false
			}
			continue
		}
		if !final && bytes.HasPrefix(ph, rest) {
			return 0, true
		}
	}
	return 0, false
}

func (s *phraseStage) process(dst, src []byte, final bool) []byte {
	buf := s.join(src)
	start := 0
	i := 0
	for {
		i = s.pairs.scan(buf, i, &s.first)
		if i >= len(buf) {
			break
		}
		n, pending := s.matchAt(buf, i, final)
		if pending {
			dst = append(dst, buf[start:i]...)
			s.hold(buf[i:])
			return dst
		}
		if n == 0 {
			i++
			continue
		}
		dst = append(dst, buf[start:i]...)
		dst = append(dst, Masked...)
		i += n
		start = i
	}
	dst = append(dst, buf[start:]...)
	s.hold(nil)
	return dst
}

// Kinds of masked runs in sanitizeStage.
const (
	runNone = iota
	runURLValue
	runToken
)

// isTokenByte reports whether c may be part of a token after its prefix.
func isTokenByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		c == '.' || c == '_' || c == '=' || c == '-'
}

// isURLValueByte reports whether c may be part of a query parameter value.
func isURLValueByte(c byte) bool {
	switch c {
	case '&', '#', '"', '\'', '<', '>', '`', 0x7f:
		return false
	}
	return c > ' '
}

func inRun(kind int, c byte) bool {
	if kind == runToken {
		return isTokenByte(c)
	}
	return isURLValueByte(c)
}

// sanitizeStage masks URL parameter values and text after token prefixes
// in a single pass.
type sanitizeStage struct {
	holdBuffer
	// literalIndex holds the token prefixes; the URL parameters' '?' and
	// '&' are added to its first bytes and pairs.
	literalIndex
	keys     [][]byte // '=' appended
	dropping int      // run being masked at the end of the previous call
}

func newSanitizeStage(extra []string) *sanitizeStage {
	s := &sanitizeStage{}
	for _, k := range URLParamKeys {
		s.keys = append(s.keys, []byte(k+"="))
		lo, up := toLower(k[0]), toUpper(k[0])
		for _, sep := range []byte{'?', '&'} {
			s.pairs.add(sep, lo)
			s.pairs.add(sep, up)
			s.first[sep] = true
		}
	}
	var prefixes []string
	for _, p := range append(slices.Clone(DefaultTokenPrefixes), extra...) {
		if p != "" && !slices.Contains(prefixes, p) && len(prefixes) < MaxTokenPrefixes {
			prefixes = append(prefixes, p)
		}
	}
	s.addLongestFirst(prefixes)
	return s
}

// matchAt returns the kind and length of a URL parameter ("?key=") or
// token prefix at buf[i:], or pending when one could still match once more
// bytes arrive.
func (s *sanitizeStage) matchAt(buf []byte, i int, final bool) (kind, n int, pending bool) {
	rest := buf[i:]
	if c := rest[0]; c == '?' || c == '&' {
		r := rest[1:]
		for _, k := range s.keys {
			if len(k) <= len(r) {
				if equalFold(r[:len(k)], k) {
					return runURLValue, 1 + len(k), false
				}
				continue
			}
			if !final && equalFold(r, k[:len(r)]) {
				return runNone, 0, true
			}
		}
	}
	for _, p := range s.byFirst[rest[0]] {
		if len(p) <= len(rest) {
			if bytes.Equal(rest[:len(p)], p) {
				return runToken, len(p), false
			}
			continue
		}
		if !final && bytes.HasPrefix(p, rest) {
			return runNone, 0, true
		}
	}
	return runNone, 0, false
}

func (s *sanitizeStage) process(dst, src []byte, final bool) []byte {
	buf := s.join(src)
	i := 0
	if s.dropping != runNone {
		for i < len(buf) && inRun(s.dropping, buf[i]) {
			i++
		}
		if i == len(buf) && !final {
			s.hold(nil)
			return dst
		}
		s.dropping = runNone
	}
	start := i
	for {
		i = s.pairs.scan(buf, i, &s.first)
		if i >= len(buf) {
			break
		}
		kind, n, pending := s.matchAt(buf, i, final)
		if kind != runNone {
			j := i + n
			switch {
			case j == len(buf) && !final:
				pending = true
			case j == len(buf) || !inRun(kind, buf[j]):
				kind = runNone // nothing follows the prefix: leave it
			}
			if kind != runNone && !pending {
				dst = append(dst, buf[start:j]...)
				dst = append(dst, Masked...)
				for j < len(buf) && inRun(kind, buf[j]) {
					j++
				}
				if j == len(buf) && !final {
					s.dropping = kind
				}
				i, start = j, j
				continue
			}
		}
		if pending {
			dst = append(dst, buf[start:i]...)
			s.hold(buf[i:])
			return dst
		}
		i++
	}
	dst = append(dst, buf[start:]...)
	s.hold(nil)
	return dst
}

func toLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func toUpper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// equalFold compares ASCII case-insensitively; a and b have equal length.
func equalFold(a, b []byte) bool {
	for i := range a {
		if toLower(a[i]) != toLower(b[i]) {
			return false
		}
	}
	return true
}
