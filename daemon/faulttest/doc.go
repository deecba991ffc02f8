// Package faulttest runs the real kvscamd binary on faulty networks: the
// daemon in a network namespace (package netfault), the local KVS endpoint
// (package kvslocal) on the host side over TLS, and faults on the link in
// between — rate limits, loss, partitions, black holes, resets, flaps — or
// in the endpoint — poisoned fragments, stalled acknowledgements, a
// skewed clock. Every scenario checks that no fragment the daemon stored
// is lost and none is persisted twice, and reports how long the daemon
// took to notice the fault and to recover, the live lag a LIVE viewer
// saw, and how fast a backlog drained.
//
// The tests are behind the build tag "faults" (they need root, ip, tc and
// nft): `make test-faults` runs a short variant, `make test-faults FULL=1`
// the long one. FAULTS_REPORT names a directory for summary.json and
// summary.md; KVSCAMD_BIN a prebuilt daemon binary. FAULTS_DEBUG=1 logs
// the daemon's output for passing scenarios too, not only failing ones.
package faulttest
