# kvscamd build, test and lint entry points. CI runs `make test` (see .ci/run).

GO         ?= go
BIN        := bin/kvscamd
# Pure Go: the V4L2 driver issues its ioctls itself (drivers/v4l2/uapi),
# so builds need no C toolchain and link statically. CGO_ENABLED=1 still
# builds, linked to libc, with the system's resolver and NSS.
CGO_ENABLED ?= 0
VERSION    ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TAGS       ?=
BENCHTIME  ?= 1s
FUZZTIME   ?= 10s
# Pinned so that lint results do not change under us. Staticcheck 2026.1
# (module v0.7.0) needs Go >= 1.25, like this module, and handles Go 1.26.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0

.PHONY: all build kvslocal demo test test-go test-systemd test-faults test-soak-short bench bench-daemon bench-vm-rss soak lint fuzz torture cross clean \
	deb deb-amd64 deb-arm64 deb-armhf \
	cross-arm64 cross-armv7 cross-armv6 test-arm test-arm64 test-armv7 test-armv6 yocto-mods lint-yocto test-powercut

all: build

# TAGS=profiling builds in the whole-daemon profiles (KVSCAMD_CPUPROFILE,
# KVSCAMD_MEMPROFILE; make bench-daemon BENCH_ARGS=-cpuprofile).
build:
	CGO_ENABLED=$(CGO_ENABLED) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./daemon

# The local KVS endpoint, for manual runs against kvscamd.
kvslocal:
	$(GO) build -trimpath -o bin/kvslocal ./kvslocal/cmd/kvslocal

# The whole pipeline on this machine against a local KVS endpoint, no AWS
# account needed: DEMO_SECONDS of a test clip replayed as a camera, what the
# endpoint received left under demo-out/.
DEMO_SECONDS ?= 20
demo: build
	DEMO_SECONDS=$(DEMO_SECONDS) $(GO) run ./daemon/demo -kvscamd $(BIN) -out demo-out

# Further test targets are added as prerequisites of test, e.g.
#   test: test-vm
test: test-go
test: test-systemd
test: test-faults
test: test-soak-short
test: test-arm

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# Unit, sysusers and tmpfiles checks (systemd-analyze, package systemd),
# lintian on the amd64 package, then that package installed into a
# debootstrapped Debian booted with systemd-nspawn (packages debootstrap,
# systemd-container, lintian; needs root).
# The Debian root is cached in NSPAWN_CACHE, keyed by its package list.
NSPAWN_CACHE ?= /var/cache/kvscamd-test
test-systemd: build deb-amd64
	bash systemd/verify.sh $(BIN)
	lintian --fail-on error,warning $(DEB_DIR)/kvscamd_$(DEB_VERSION)_amd64.deb
	$(GO) vet -tags nspawntest ./systemd/nspawntest/
	KVSCAMD_DEB=$(CURDIR)/$(DEB_DIR)/kvscamd_$(DEB_VERSION)_amd64.deb NSPAWN_CACHE=$(NSPAWN_CACHE) \
		$(GO) test -tags nspawntest -count=1 -timeout 15m -v ./systemd/nspawntest/

# Debian packages for Raspberry Pi OS (arm64, armhf) and amd64, built by
# nfpm (a tool in go.mod) into build/deb/. Version from git
# (packaging/deb/version.sh). armhf carries the ARMv6 build, which runs on
# every Pi with a 32-bit OS. The binaries are the ones "make cross" writes
# (bin/linux-<arch>/kvscamd): static, pure Go, no C toolchain needed.
# Not PIE: without cgo, Go's linker makes a PIE that needs the dynamic
# loader and relocates itself at start (here 1.4 MB more file and about
# 1 MiB more RSS), and RELRO/BIND_NOW have nothing to protect in a binary
# without a GOT filled by ld.so. Lintian checks hardening only in binaries
# that link shared libraries; see packaging/deb/lintian-overrides.
DEB_DIR     := build/deb
DEB_VERSION  = $(shell packaging/deb/version.sh)
DEB_LDFLAGS  = -s -w -buildid= -X main.version=$(DEB_VERSION) -X main.commit=$(COMMIT)

deb: deb-amd64 deb-arm64 deb-armhf

deb-amd64: DEB_BIN = bin/linux-amd64/kvscamd
deb-arm64: DEB_BIN = bin/linux-arm64/kvscamd
deb-armhf: DEB_BIN = bin/linux-armv6/kvscamd
deb-amd64:
	$(AMD64_ENV) $(GO) build $(CROSS_GOFLAGS) -ldflags '$(DEB_LDFLAGS)' -o $(DEB_BIN) ./daemon
	$(MAKE) --no-print-directory deb-package DEB_ARCH=amd64 DEB_BIN=$(DEB_BIN)
deb-arm64:
	$(ARM64_ENV) $(GO) build $(CROSS_GOFLAGS) -ldflags '$(DEB_LDFLAGS)' -o $(DEB_BIN) ./daemon
	$(MAKE) --no-print-directory deb-package DEB_ARCH=arm64 DEB_BIN=$(DEB_BIN)
deb-armhf:
	$(ARMV6_ENV) $(GO) build $(CROSS_GOFLAGS) -ldflags '$(DEB_LDFLAGS)' -o $(DEB_BIN) ./daemon
	$(MAKE) --no-print-directory deb-package DEB_ARCH=armhf DEB_BIN=$(DEB_BIN)

# deb-package packages DEB_BIN for DEB_ARCH.
.PHONY: deb-package
deb-package:
	@mkdir -p $(DEB_DIR)/docs-$(DEB_ARCH)
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e 's/@COMMIT@/$(COMMIT)/' \
		-e "s/@DATE@/$$(TZ=UTC git log -1 --format=%cd --date=format-local:'%a, %d %b %Y %H:%M:%S +0000')/" \
		packaging/deb/changelog.in | gzip -9n > $(DEB_DIR)/docs-$(DEB_ARCH)/changelog.gz
	gzip -9n < packaging/deb/kvscamd.1 > $(DEB_DIR)/docs-$(DEB_ARCH)/kvscamd.1.gz
	sed -e 's|$${KVSCAMD_VERSION}|$(DEB_VERSION)|' -e 's|$${KVSCAMD_ARCH}|$(DEB_ARCH)|' \
		-e 's|$${KVSCAMD_BINARY}|$(DEB_BIN)|' -e 's|$${KVSCAMD_DOCS}|$(DEB_DIR)/docs-$(DEB_ARCH)|' \
		packaging/deb/nfpm.yaml > $(DEB_DIR)/docs-$(DEB_ARCH)/nfpm.yaml
	$(GO) tool nfpm package -f $(DEB_DIR)/docs-$(DEB_ARCH)/nfpm.yaml -p deb -t $(DEB_DIR)/kvscamd_$(DEB_VERSION)_$(DEB_ARCH).deb

# The daemon on faulty networks (daemon/faulttest, build tag faults):
# network namespaces, tc and nftables, so root and the iproute2 and
# nftables packages. The short variant is what CI runs (a few minutes,
# the scenarios in parallel); FULL=1 runs the long one (10-minute
# backlog, 2-minute partitions). Summary tables go to FAULTS_REPORT.
FULL          ?=
FAULTS_REPORT ?= $(CURDIR)/build/faults
FAULTS_TIMEOUT := $(if $(FULL),90m,15m)
test-faults: build
	FAULTS_FULL=$(if $(FULL),1,) FAULTS_REPORT=$(FAULTS_REPORT) KVSCAMD_BIN=$(CURDIR)/$(BIN) \
		$(GO) test -tags faults -count=1 -parallel 16 -timeout $(FAULTS_TIMEOUT) -v ./daemon/faulttest/

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# The whole daemon binary on a 1080p30 4 Mbit/s clip (encoded once into
# build/bench-cache with ffmpeg), in real time, uploading over https with
# IoT credentials to the local KVS endpoint; prints one table and writes
# build/bench/bench-daemon.json. BENCH_ARGS adds harness flags, e.g.
#   make bench-daemon BENCH_STREAMS=4 BENCH_ARGS='-loopdev -capture-off 20s'
#   make bench-daemon BENCH_ARGS='-variant go:GOGC=100,GOMEMLIMIT=off -variant tuned'
# (-loopdev needs root: state on an ext4 loop device, sectors counted.)
BENCH_MINUTES ?= 2
BENCH_STREAMS ?= 1
BENCH_ARGS    ?=
bench-daemon: build
	$(GO) run ./daemon/benchdaemon -kvscamd $(BIN) -minutes $(BENCH_MINUTES) -streams $(BENCH_STREAMS) -out build/bench $(BENCH_ARGS)

# The daemon's RSS under Debian's own kernel in a VM, with the binary on
# ext4 (scripts/vm-rss.sh); needs the clip bench-daemon encodes.
bench-vm-rss:
	scripts/vm-rss.sh

# A week of video per stream pushed through the whole pipeline as fast as
# it goes (about 750x real time on 2 cores: some 15 minutes), a fault
# every SOAK_FAULT_EVERY, 1 GiB ring; fails when RSS, goroutines or open
# files grow. Plot and data in build/soak/.
SOAK_HOURS       ?= 168
SOAK_MAX_MINUTES ?= 240
SOAK_FAULT_EVERY ?= 20s
soak: build
	$(GO) run ./daemon/benchdaemon -mode soak -kvscamd $(BIN) -video-hours $(SOAK_HOURS) -minutes $(SOAK_MAX_MINUTES) -fault-every $(SOAK_FAULT_EVERY) -out build/soak

# The soak's short variant for CI: 24 h of video (or 3 minutes, whichever
# comes first), same checks, credentials living 40 s.
test-soak-short: build
	$(GO) run ./daemon/benchdaemon -mode soak -kvscamd $(BIN) -video-hours 24 -minutes 3 -fault-every 20s -cred-lifetime 40s -out build/soak-short

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags faults ./daemon/faulttest/
	@# 32-bit ARM has its own field types (Statfs_t.Bsize, Rusage are int32):
	@# type-check every package for it so the Pi Zero and armhf builds stay whole.
	GOARCH=arm GOARM=7 CGO_ENABLED=0 $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags faults ./daemon/faulttest/

# The layer check needs a real BitBake grammar: npm's tree-sitter-bitbake,
# pinned by version and tarball checksum, compiled with Debian's
# libtree-sitter-dev into build/bbparse (yocto/bbparse). No BitBake runs.
lint: lint-yocto
TS_BITBAKE_VERSION := 1.1.0
TS_BITBAKE_SHA256  := 2a12411d361c1c0e40db58e6ca892826807c175e154483d0f81d7f4ab51ff8c4
TS_BITBAKE_TGZ     := build/npm/tree-sitter-bitbake-$(TS_BITBAKE_VERSION).tgz
HOST_CC            ?= cc

$(TS_BITBAKE_TGZ):
	@mkdir -p build/npm
	cd build/npm && npm pack --silent tree-sitter-bitbake@$(TS_BITBAKE_VERSION) >/dev/null

build/bbparse: yocto/bbparse/bbparse.c $(TS_BITBAKE_TGZ)
	echo "$(TS_BITBAKE_SHA256)  $(TS_BITBAKE_TGZ)" | sha256sum -c --quiet
	rm -rf build/npm/package && tar -C build/npm -xzf $(TS_BITBAKE_TGZ)
	$(HOST_CC) -O2 -Ibuild/npm/package/src -o $@ yocto/bbparse/bbparse.c \
		build/npm/package/src/parser.c build/npm/package/src/scanner.c -ltree-sitter

# Offline: grammar, required variables, licence checksums (the modules'
# files come from the module cache), installed files, module list.
lint-yocto: build/bbparse
	$(GO) mod download
	$(GO) run ./yocto/layertool lint -bbparse build/bbparse

# Regenerates the recipe's module list, licence list and SRCREV from
# go.mod/go.sum (run after changing dependencies, with them committed).
# YOCTO_SRCREV=HEAD moves SRCREV to HEAD even when the modules are unchanged.
YOCTO_SRCREV ?= keep
yocto-mods:
	$(GO) mod download
	$(GO) run ./yocto/layertool mods -srcrev $(YOCTO_SRCREV)

# Runs every Fuzz target of every package for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		list=$$($(GO) test -list '^Fuzz' $$pkg); \
		for f in $$(echo "$$list" | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# The ring buffer's crash test with many more SIGKILL cycles than make test.
RING_TORTURE_CYCLES ?= 2000
torture:
	RING_TORTURE_CYCLES=$(RING_TORTURE_CYCLES) $(GO) test -race -count=1 -timeout 90m -run '^TestTorture$$' -v ./daemon/ring/

# Cross builds for Raspberry Pis: pure Go and static, so GOARCH (and
# GOARM) is all a target takes; no C cross toolchain. Reproducible:
# -trimpath, no build ID, no VCS stamp beyond the version and commit
# passed in, stripped.
#   linux-arm64  Pi 3/4/5 and Zero 2 W on a 64-bit OS
#   linux-armv7  Pi 2/3/4 on a 32-bit OS (Debian armhf, needs ARMv7)
#   linux-armv6  Pi Zero/Zero W/1 (ARM1176), and every other Pi on a
#                32-bit OS: GOARM=6 code with the VFP, no ARMv7
#                instructions, no libc to be ARMv7 code either.
CROSS_GOFLAGS  := -trimpath -buildvcs=false
CROSS_LDFLAGS  := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT)
AMD64_ENV      := CGO_ENABLED=0 GOOS=linux GOARCH=amd64
ARM64_ENV      := CGO_ENABLED=0 GOOS=linux GOARCH=arm64
ARMV7_ENV      := CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7
ARMV6_ENV      := CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6
QEMU_AARCH64   ?= qemu-aarch64
QEMU_ARM       ?= qemu-arm

cross: cross-arm64 cross-armv7 cross-armv6
	@ls -l bin/linux-*/kvscamd && sha256sum bin/linux-*/kvscamd

cross-arm64:
	$(ARM64_ENV) $(GO) build $(CROSS_GOFLAGS) -ldflags '$(CROSS_LDFLAGS)' -o bin/linux-arm64/kvscamd ./daemon

cross-armv7:
	$(ARMV7_ENV) $(GO) build $(CROSS_GOFLAGS) -ldflags '$(CROSS_LDFLAGS)' -o bin/linux-armv7/kvscamd ./daemon

cross-armv6:
	$(ARMV6_ENV) $(GO) build $(CROSS_GOFLAGS) -ldflags '$(CROSS_LDFLAGS)' -o bin/linux-armv6/kvscamd ./daemon

# Unit tests under qemu-user, for every package whose tests need nothing
# but the test binary and host tools (in-process TLS/HTTP servers and
# ffmpeg work: qemu-user runs the ARM test binary, the kernel runs the x86
# tools it starts). Left to the host, see README.md ("ARM builds"):
#   ./daemon           its tests start the test binary itself as kvscamd
#   ./daemon/demo      builds and runs bin/kvscamd and kvslocal
#   ./drivers/v4l2/vmtest  boots an x86 VM around the test binary
#   TestTorture, TestLockSurvivesDeletedLockFile
#                      (daemon/ring) re-execute the test binary
#   ./daemon/ring/powercut  boots an x86 VM around kvscamd
#   ./internal/netfault     runs the test binary again inside network
#                      namespaces
#   ./credentials      end-to-end against iotlocal over mutual TLS, and
#   ./daemon/sender    against kvslocal: both assert second-scale timing
#                      (2 s credentials, 1 s idle close) that an emulated
#                      CPU on a shared runner misses
# An ARM child process would need binfmt_misc, which CI machines may not
# allow. The binaries are static, so qemu needs no ARM sysroot (-L); the
# V4L2 layout test (drivers/v4l2/uapi) runs the cross compilers, with -S
# only, to read the kernel headers of each target. No -race: ThreadSanitizer on arm64 needs a 48-bit address space
# and qemu-user on an x86-64 host offers 47 bits ("unsupported VMA range"),
# so the race detector runs on the host only (make test-go).
ARM_TEST_HOST_ONLY := %/daemon/ring/powercut %/daemon/ring/powercut/guestfwd %/internal/netfault
ARM_TEST_PKGS = $(filter-out $(ARM_TEST_HOST_ONLY),$(shell $(GO) list \
	./credentials/certs/... ./credentials/iotlocal/... ./credentials/testpki/... \
	./daemon/config/... ./daemon/logging/... \
	./daemon/ring/... ./daemon/sdnotify/... ./daemon/sender/ack/... ./daemon/service/... \
	./daemon/status/... ./daemon/stream/... ./drivers/clock/... ./drivers/exec/... ./drivers/file/... \
	./drivers/v4l2 ./drivers/v4l2/uapi ./fragmenter/... ./h264/... ./internal/... ./kvslocal/... ./media/... ./yocto/...))
ARM_TEST_SKIP := ^(TestTorture|TestLockSurvivesDeletedLockFile)$$
ARM_MUX_CLIPS := baseline-repeat high-aud multislice baseline-360p midgop

test-arm: test-arm64 test-armv7 test-armv6

test-arm64:
	$(ARM64_ENV) $(GO) test -count=1 -skip '$(ARM_TEST_SKIP)' -exec '$(QEMU_AARCH64)' $(ARM_TEST_PKGS)

test-armv7:
	$(ARMV7_ENV) $(GO) test -count=1 -skip '$(ARM_TEST_SKIP)' -exec '$(QEMU_ARM)' $(ARM_TEST_PKGS)

# The Pi Zero binary on an emulated ARM1176: it starts, is static and
# GOARM=6, and muxes every test clip into the same bytes as the host
# build; the V4L2 driver's and the H.264 parser's tests run there too,
# built the same way.
ARMV6_TEST_PKGS := ./drivers/v4l2 ./drivers/v4l2/uapi ./h264
test-armv6: build cross-armv6
	bash scripts/test-armv6.sh $(BIN) bin/linux-armv6/kvscamd $(QEMU_ARM) $(ARM_MUX_CLIPS)
	$(ARMV6_ENV) $(GO) test -count=1 -exec '$(QEMU_ARM) -cpu arm1176' $(ARMV6_TEST_PKGS)
# The ring's power-cut test with many more cycles than make test: kvscamd
# in a QEMU VM, SIGKILLed at random moments (daemon/ring/powercut). Needs
# the V4L2 VM test's packages (qemu-system-x86, busybox-static, ...) and
# e2fsprogs. POWERCUT_SEED repeats a run's kill moments.
POWERCUT_CYCLES ?= 50
POWERCUT_SEED ?=
test-powercut:
	KVSCAMD_POWERCUT_CYCLES=$(POWERCUT_CYCLES) KVSCAMD_POWERCUT_SEED=$(POWERCUT_SEED) $(GO) test -count=1 -timeout 120m -run '^TestPowerCut$$' -v ./daemon/ring/powercut/

clean:
	rm -rf bin/ demo-out/ build/
