package archive

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// CacheFileName is the name of a cache archive under its key; cache
// archives are zip archives written with WriteZip and read with ExtractZip.
const CacheFileName = "cache.zip"

// ErrBadCacheKey is wrapped by SanitizeCacheKey's errors.
var ErrBadCacheKey = errors.New("invalid cache key")

var keyDecoder = strings.NewReplacer("%2f", "/", "%2F", "/", "%2e", ".", "%2E", ".")

// SanitizeCacheKey turns a cache key (already variable-expanded) into the
// relative slash path it is stored under, as the runner does: URL-encoded
// `/` and `.` (%2f, %2e) are decoded, `\` becomes `/`, `.` and `..`
// components are resolved and trailing whitespace is trimmed. A key that
// resolves to nothing or climbs above its own root is refused.
func SanitizeCacheKey(key string) (string, error) {
	out := keyDecoder.Replace(key)
	out = strings.ReplaceAll(out, `\`, "/")
	// Trimming can expose a new "." or ".." component ("a/.. /."), so
	// resolve and trim until neither changes the key.
	for {
		resolved, ok := resolveKey(out)
		if !ok {
			return "", fmt.Errorf("archive: sanitize cache key %q: escapes the cache directory: %w", key, ErrBadCacheKey)
		}
		trimmed := strings.TrimRightFunc(resolved, unicode.IsSpace)
		if trimmed == out {
			break
		}
		out = trimmed
	}
	if out == "" {
		return "", fmt.Errorf("archive: sanitize cache key %q: resolves to an empty key: %w", key, ErrBadCacheKey)
	}
	return out, nil
}

// resolveKey drops empty and "." components and applies "..", reporting
// false when ".." climbs above the start.
func resolveKey(key string) (string, bool) {
	var parts []string
	for _, p := range strings.Split(key, "/") {
		switch p {
		case "", ".":
		case "..":
			if len(parts) == 0 {
				return "", false
			}
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), true
}
