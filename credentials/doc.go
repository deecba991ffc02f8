// Package credentials provides the AWS credentials kvscamd signs its
// Kinesis Video Streams requests with, as an aws.CredentialsProvider.
//
// The usual source on a device is the AWS IoT credentials provider
// (Config.Source "iot"): the device authenticates with its X.509
// certificate over mutual TLS and receives temporary credentials for the
// IAM role behind a role alias. Fixed keys ("static") and the SDK's
// environment/shared-file chain ("default") serve development machines.
//
// New wraps the source in a Refresher, which fetches new credentials in
// the background once half of the old ones' lifetime has passed, and in
// an aws.CredentialsCache, so that signing a request never waits for the
// network while valid credentials exist. When the endpoint is down, the
// old credentials are used until shortly before they expire.
//
// Errors, log records, Status and Check output never contain the secret
// access key or the session token; types that hold them print
// "[redacted]".
package credentials
