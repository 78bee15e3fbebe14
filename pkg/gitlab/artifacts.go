package gitlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// ArtifactUpload describes one artifact archive to upload (section 5.2).
type ArtifactUpload struct {
	// Name is the archive's base name; "default" when empty.
	Name string
	// Type is the artifact type ("archive", "junit", ...); "archive" when
	// empty.
	Type string
	// Format is "zip", "gzip" or "raw"; empty leaves GitLab's default (zip).
	Format string
	// ExpireIn is forwarded verbatim ("1 week", "never"); empty omits it.
	ExpireIn string
}

// FileName is the name of the multipart file part: <name>.zip for zip
// archives, <name>.gz for gzip, <name>.tar.zst for tarzstd and <name> for
// raw files.
func (a ArtifactUpload) FileName() string {
	name := path.Base(strings.ReplaceAll(a.Name, `\`, "/"))
	if name == "." || name == "/" || name == "" {
		name = "default"
	}
	switch a.Format {
	case ArtifactFormatRaw:
		return name
	case ArtifactFormatGzip:
		return name + ".gz"
	case "tarzstd":
		return name + ".tar.zst"
	default: // zip, zipzstd and GitLab's default
		return name + ".zip"
	}
}

// errAttemptOver ends the multipart writer of an attempt whose answer is in.
var errAttemptOver = errors.New("upload attempt over")

// UploadArtifacts uploads one artifact archive for the job (POST
// /jobs/:id/artifacts) as a streamed multipart body with one part named
// "file": the archive is never held in memory. 201 is success; 413 is
// ErrTooLarge; 403 (job token invalid, job not running) is ErrForbidden and
// never retried.
//
// body is read once. Transport retries (429, 5xx) and a 307 redirect need
// the body again: they happen only when no byte of it was read yet, or when
// body is an io.Seeker (an *os.File), which is rewound to where it stood at
// the call. Otherwise the retriable answer is returned as an error. A 307 is
// followed once and only to the instance's own host name (scheme and port
// may change), so the job token never goes elsewhere.
func (c *Client) UploadArtifacts(ctx context.Context, jobID int64, jobToken string, opts ArtifactUpload, body io.Reader) error {
	src := &countingReader{r: body}
	seeker, _ := body.(io.Seeker)
	start := int64(-1)
	if seeker != nil {
		if pos, err := seeker.Seek(0, io.SeekCurrent); err == nil {
			start = pos
		}
	}
	replayable := func() bool { return src.n == 0 || start >= 0 }

	q := url.Values{}
	q.Set("artifact_type", opts.Type)
	if opts.Type == "" {
		q.Set("artifact_type", ArtifactTypeArchive)
	}
	if opts.Format != "" {
		q.Set("artifact_format", opts.Format)
	}
	if opts.ExpireIn != "" {
		q.Set("expire_in", opts.ExpireIn)
	}
	filename := opts.FileName()
	boundary := multipart.NewWriter(io.Discard).Boundary()
	h := http.Header{}
	h.Set(headerJobToken, jobToken)
	h.Set("Content-Type", "multipart/form-data; boundary="+boundary)

	cl := call{
		method:     http.MethodPost,
		path:       "jobs/" + strconv.FormatInt(jobID, 10) + "/artifacts",
		query:      q,
		header:     h,
		replayable: replayable,
		secrets:    []string{jobToken},
		body: func() (io.Reader, func(), error) {
			if src.n > 0 {
				if start < 0 {
					return nil, nil, errors.New("artifact stream already consumed")
				}
				if _, err := seeker.Seek(start, io.SeekStart); err != nil {
					return nil, nil, fmt.Errorf("rewind artifact: %w", err)
				}
				src.n = 0
			}
			pr, pw := io.Pipe()
			done := make(chan struct{})
			go func() {
				defer close(done)
				pw.CloseWithError(writeMultipart(pw, boundary, filename, src))
			}()
			return pr, func() { pr.CloseWithError(errAttemptOver); <-done }, nil
		},
	}

	for redirected := false; ; redirected = true {
		resp, err := c.do(ctx, cl)
		if err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusOK:
			discard(resp.Response)
			return nil
		case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			loc, lerr := resp.Location()
			e := c.fail(cl, resp)
			switch {
			case lerr != nil:
				e.Message = "redirect without a usable Location"
			case redirected:
				e.Message = "redirected twice"
			case loc.Hostname() != c.api.Hostname():
				e.Message = "redirect to another host refused: " + loc.Hostname()
			case !replayable():
				e.Message = "redirected, but the artifact stream cannot be sent again"
			default:
				cl.base = &url.URL{Scheme: loc.Scheme, Host: loc.Host}
				continue
			}
			return e
		case http.StatusRequestEntityTooLarge:
			e := c.fail(cl, resp)
			e.Message = fmt.Sprintf("artifact %s is larger than the instance's maximum artifacts size", filename)
			return e
		default:
			return c.fail(cl, resp)
		}
	}
}

// writeMultipart writes the whole multipart body: one "file" part.
func writeMultipart(w io.Writer, boundary, filename string, src io.Reader) error {
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	part, err := mw.CreateFormFile("file", filename)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, src); err != nil {
		return err
	}
	return mw.Close()
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// DownloadArtifacts streams the artifacts archive of job jobID to w (GET
// /jobs/:id/artifacts) and returns the number of bytes written. jobToken is
// the running job's token. It first asks for a direct download, following
// 302/307 redirects to object storage without the job token; if that fails
// before the archive started to stream, and not with 401/403/404 (final), it
// asks once more without direct download, GitLab then serving the file.
func (c *Client) DownloadArtifacts(ctx context.Context, jobID int64, jobToken string, w io.Writer) (int64, error) {
	n, err := c.download(ctx, jobID, jobToken, true, w)
	var e *Error
	if err == nil || n > 0 || AbortsJob(err) || ctx.Err() != nil || !errors.As(err, &e) || e.StatusCode == http.StatusOK {
		// Done, final, or failed while streaming (w may hold bytes).
		return n, err
	}
	c.log.WarnContext(ctx, "direct artifact download failed, asking GitLab to serve it", "artifacts_job_id", jobID, "error", err)
	return c.download(ctx, jobID, jobToken, false, w)
}

func (c *Client) download(ctx context.Context, jobID int64, jobToken string, direct bool, w io.Writer) (int64, error) {
	h := http.Header{}
	h.Set(headerJobToken, jobToken)
	cl := call{
		method:  http.MethodGet,
		path:    "jobs/" + strconv.FormatInt(jobID, 10) + "/artifacts",
		header:  h,
		secrets: []string{jobToken},
	}
	if direct {
		cl.query = url.Values{"direct_download": {"true"}}
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		defer discard(resp.Response)
		src := &countingReader{r: resp.Body}
		n, err := io.Copy(w, src)
		if err != nil {
			e := &Error{
				Endpoint:   cl.endpoint(),
				Instance:   c.instance,
				StatusCode: resp.StatusCode,
				RequestID:  resp.requestID,
				Attempts:   resp.attempts,
				Err:        err,
			}
			if src.err != nil {
				e.Message = scrub(fmt.Sprintf("read archive after %d bytes: %v", n, err), cl.secrets)
				if ctx.Err() == nil {
					e.kind = ErrUnavailable
				}
			} else {
				e.Message = fmt.Sprintf("write archive after %d bytes: %v", n, err)
			}
			return n, e
		}
		return n, nil
	default:
		return 0, c.fail(cl, resp)
	}
}
