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

// Masker is an io.Writer that hides secrets before passing bytes on. In
// the bytes as written it finds every occurrence of every phrase
// (overlapping ones included), every value of a URL query parameter in
// URLParamKeys and every token after a token prefix, and replaces their
// union: each run of overlapping occurrences becomes one [MASKED], so no
// byte of any of them is passed on in clear. Occurrences that only touch
// stay separate ("[MASKED][MASKED]"). A token prefix or parameter key is
// kept unless another occurrence covers it.
//
// Matches are found however the input is split across Write calls: the
// Masker holds back the few bytes that could still start a match (no more
// than the longest phrase, prefix or key) until the next Write, Flush or
// Close decides them, and drops the bytes of a token or parameter value as
// they come. The output for a stream does not depend on how it was split
// into writes. A Masker is not safe for concurrent use.
type Masker struct {
	w   io.Writer
	pat *patterns
	holdBuffer
	base int64 // stream position of the first held byte
	// spans are the masked ranges not yet passed, sorted by start, the
	// overlapping ones merged. [MASKED] has been written for those that
	// start before base.
	spans []span
	// open is the kind of run that may still extend the last span, or
	// runNone when the last span's end is known.
	open   int
	out    []byte
	err    error
	closed bool
}

// span is a masked range [start, end) of stream positions.
type span struct{ start, end int64 }

// NewMasker returns a Masker writing to w.
func NewMasker(w io.Writer, opts MaskOptions) *Masker {
	return &Masker{w: w, pat: newPatterns(opts)}
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

// process finds the occurrences that start in the held bytes and p, up to
// the first that more bytes could still decide, writes what lies before it
// and holds the rest.
func (m *Masker) process(p []byte, final bool) error {
	buf := m.join(p)
	m.extendOpen(buf, final)
	decided := len(buf)
	for i := 0; ; i++ {
		i = m.pat.pairs.scan(buf, i, &m.pat.first)
		if i >= len(buf) {
			break
		}
		if !final && m.pat.pendingAt(buf[i:]) {
			decided = i
			break
		}
		m.addAt(buf, i, final)
	}
	m.out = m.render(m.out[:0], buf, decided)
	m.base += int64(decided)
	m.hold(buf[decided:])
	if len(m.out) == 0 {
		return nil
	}
	if _, err := m.w.Write(m.out); err != nil {
		m.err = fmt.Errorf("trace: write masked output: %w", err)
		return m.err
	}
	return nil
}

// extendOpen extends the last span over the new bytes of the run it ends
// in, when that run reached the end of the previous call's bytes.
func (m *Masker) extendOpen(buf []byte, final bool) {
	if m.open == runNone {
		return
	}
	last := &m.spans[len(m.spans)-1]
	j := runEnd(m.open, buf, int(last.end-m.base))
	last.end = m.base + int64(j)
	if j < len(buf) || final {
		m.open = runNone
	}
}

// addAt adds the spans of the occurrences that start at buf[i], which
// pendingAt has found decidable.
func (m *Masker) addAt(buf []byte, i int, final bool) {
	rest := buf[i:]
	for _, ph := range m.pat.phrases[rest[0]] { // longest first
		if len(ph) <= len(rest) && bytes.Equal(rest[:len(ph)], ph) {
			m.add(m.base+int64(i), m.base+int64(i+len(ph)), runNone)
			break
		}
	}
	if c := rest[0]; c == '?' || c == '&' {
		r := rest[1:]
		for _, k := range m.pat.keys {
			if len(k) < len(r) && equalFold(r[:len(k)], k) && isURLValueByte(r[len(k)]) {
				m.addRun(buf, runURLValue, i+1+len(k), final)
				break
			}
		}
	}
	// Every matching prefix counts: the text after a shorter one may hold
	// bytes that end the run of a longer one.
	for _, p := range m.pat.prefixes[rest[0]] {
		if len(p) < len(rest) && bytes.Equal(rest[:len(p)], p) && isTokenByte(rest[len(p)]) {
			m.addRun(buf, runToken, i+len(p), final)
		}
	}
}

// addRun adds the span of the run of kind starting at buf[i], open when it
// reaches the end of buf before the end of the stream.
func (m *Masker) addRun(buf []byte, kind, i int, final bool) {
	j := runEnd(kind, buf, i)
	open := runNone
	if j == len(buf) && !final {
		open = kind
	}
	m.add(m.base+int64(i), m.base+int64(j), open)
}

// runEnd returns the end of the run of kind that starts at buf[i].
func runEnd(kind int, buf []byte, i int) int {
	for i < len(buf) && inRun(kind, buf[i]) {
		i++
	}
	return i
}

// add records the masked range [s, e), merging it with the spans it
// overlaps. open is the kind of run that may extend it past the bytes seen
// so far (runNone when e is its end); such a span reaches the end of the
// bytes seen, so after merging it is the last one.
func (m *Masker) add(s, e int64, open int) {
	k := len(m.spans)
	for k > 0 && m.spans[k-1].start > s {
		k--
	}
	if k > 0 && m.spans[k-1].end > s {
		k--
		m.spans[k].end = max(m.spans[k].end, e)
	} else {
		m.spans = slices.Insert(m.spans, k, span{s, e})
	}
	j := k + 1
	for j < len(m.spans) && m.spans[j].start < m.spans[k].end {
		m.spans[k].end = max(m.spans[k].end, m.spans[j].end)
		j++
	}
	m.spans = slices.Delete(m.spans, k+1, j)
	// A URL value's run goes on wherever a token's does, so of two open
	// runs in one span the URL value's decides its end.
	if open != runNone && m.open != runURLValue {
		m.open = open
	}
}

// render appends buf[:decided] to dst, each span written as one [MASKED],
// and forgets the spans it has passed.
func (m *Masker) render(dst, buf []byte, decided int) []byte {
	end := m.base + int64(decided)
	pos := m.base
	done := 0
	for k, sp := range m.spans {
		if sp.start >= end {
			break
		}
		if sp.start >= pos {
			dst = append(dst, buf[pos-m.base:sp.start-m.base]...)
			dst = append(dst, Masked...)
		}
		if sp.end > end || k == len(m.spans)-1 && m.open != runNone {
			pos = end
			break
		}
		pos = sp.end
		done = k + 1
	}
	if pos < end {
		dst = append(dst, buf[pos-m.base:decided]...)
	}
	m.spans = m.spans[:copy(m.spans, m.spans[done:])]
	return dst
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

// patterns are what a Masker looks for, indexed by first byte, with the
// byte pairs that may begin one for pairSet.scan.
type patterns struct {
	phrases  [256][][]byte // longest first
	prefixes [256][][]byte // longest first
	keys     [][]byte      // URL parameter keys, '=' appended
	first    [256]bool
	pairs    pairSet
}

func newPatterns(opts MaskOptions) *patterns {
	x := &patterns{}
	var phrases []string
	for _, p := range opts.Phrases {
		p = strings.TrimSpace(p)
		if p != "" && !slices.Contains(phrases, p) {
			phrases = append(phrases, p)
		}
	}
	x.addLongestFirst(&x.phrases, phrases)
	var prefixes []string
	for _, p := range append(slices.Clone(DefaultTokenPrefixes), opts.TokenPrefixes...) {
		if p != "" && !slices.Contains(prefixes, p) && len(prefixes) < MaxTokenPrefixes {
			prefixes = append(prefixes, p)
		}
	}
	x.addLongestFirst(&x.prefixes, prefixes)
	for _, k := range URLParamKeys {
		x.keys = append(x.keys, []byte(k+"="))
		lo, up := toLower(k[0]), toUpper(k[0])
		for _, sep := range []byte{'?', '&'} {
			x.pairs.add(sep, lo)
			x.pairs.add(sep, up)
			x.first[sep] = true
		}
	}
	return x
}

// addLongestFirst adds the strings of list (none empty), which it sorts
// longest first (stable, so equal lengths keep their order), to byFirst.
func (x *patterns) addLongestFirst(byFirst *[256][][]byte, list []string) {
	slices.SortStableFunc(list, func(a, b string) int { return len(b) - len(a) })
	for _, p := range list {
		byFirst[p[0]] = append(byFirst[p[0]], []byte(p))
		x.first[p[0]] = true
		if len(p) == 1 {
			x.pairs.addFirst(p[0])
		} else {
			x.pairs.add(p[0], p[1])
		}
	}
}

// pendingAt reports whether an occurrence starting at rest[0] could still
// be found once more bytes arrive: rest is shorter than a phrase it begins,
// or than a prefix or parameter key it begins plus the byte after it.
func (x *patterns) pendingAt(rest []byte) bool {
	for _, ph := range x.phrases[rest[0]] {
		if len(ph) <= len(rest) {
			break // the rest are no longer
		}
		if bytes.HasPrefix(ph, rest) {
			return true
		}
	}
	if c := rest[0]; c == '?' || c == '&' {
		r := rest[1:]
		for _, k := range x.keys {
			if len(r) <= len(k) && equalFold(r, k[:len(r)]) {
				return true
			}
		}
	}
	for _, p := range x.prefixes[rest[0]] {
		if len(p) < len(rest) {
			break
		}
		if bytes.HasPrefix(p, rest) {
			return true
		}
	}
	return false
}

// Kinds of masked runs.
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
