// Package invoke owns "run function F with payload P, asynchronously": the
// Invoker contract, its AWS Lambda implementation (InvocationType Event, a
// tenant id for per-tenant isolation, oversized payloads passed through S3 by
// reference) and an in-process implementation for local mode and tests that
// also delivers Lambda-destination records to a configured function.
package invoke
