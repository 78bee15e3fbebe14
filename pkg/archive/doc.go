// Package archive owns the files a job sends and receives as archives:
// choosing files for artifacts and caches (doublestar paths, exclude
// patterns, untracked files), writing them as a streamed zip, as
// concatenated gzip members for reports or as a raw file, extracting zip
// archives into a build directory without ever writing outside it, and
// sanitizing cache keys.
//
// The selection and formats follow GitLab's runner protocol (artifacts and
// cache sections): paths are relative to the project directory, symlinks
// are stored as links and never followed, and warnings go to the job trace
// rather than failing the job.
package archive
