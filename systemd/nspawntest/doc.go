// Package nspawntest installs the kvscamd Debian package into a minimal
// Debian bookworm root, boots that root with systemd-nspawn and checks the
// packaged service under a real systemd: readiness, journald fields, the
// watchdog, restarts, reload, stop and the package's remove and purge.
// It has tests only, behind the build tag nspawntest (they need root, a
// package and minutes): "make test-systemd" runs them as root with the
// amd64 package built by "make deb-amd64".
package nspawntest
