// Package credentials provides the AWS credentials kvscamd signs its
// Kinesis Video Streams requests with: a Credentials value type and the
// Provider interface that hands them out.
//
// The usual source on a device is the AWS IoT credentials provider
// (Config.Source "iot"): the device authenticates with its X.509
// certificate over mutual TLS and receives temporary credentials for the
// IAM role behind a role alias. Fixed keys ("static") and the default
// chain ("default": AWS_* environment variables, then static keys in the
// shared credentials and config files) serve development machines. The
// default chain deliberately stops there: single sign-on, assumed roles,
// credential processes and web identity would each need a client for
// another AWS service, and a camera has the IoT credentials provider for
// that; a profile that uses them is refused with an error that says so.
//
// New wraps the source in a Refresher, which fetches new credentials in
// the background once half of the old ones' lifetime has passed, and in
// a Cache, so that signing a request never waits for the
// network while valid credentials exist. When the endpoint is down, the
// old credentials are used until shortly before they expire.
//
// Errors, log records, Status and Check output never contain the secret
// access key or the session token; types that hold them print
// "[redacted]".
package credentials
