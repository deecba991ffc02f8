# kvscamd build, test and lint entry points. CI runs `make test` (see .ci/run).

GO         ?= go
BIN        := bin/kvscamd
# The V4L2 driver needs cgo (go4vl binds the kernel headers); CGO_ENABLED=0
# builds a pure-Go binary whose v4l2 driver explains how to rebuild.
CGO_ENABLED ?= 1
VERSION    ?= $(shell git describe --tags --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BENCHTIME  ?= 1s
FUZZTIME   ?= 10s
# Pinned so that lint results do not change under us. Staticcheck 2026.1
# (module v0.7.0) needs Go >= 1.25, like this module, and handles Go 1.26.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0

.PHONY: all build kvslocal demo test test-go test-systemd test-faults test-soak-short bench bench-daemon soak lint fuzz torture cross clean deb deb-amd64 deb-arm64 deb-armhf

all: build

build:
	CGO_ENABLED=$(CGO_ENABLED) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./daemon

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
# (packaging/deb/version.sh). armhf carries the static ARMv6 build, which
# runs on every Pi with a 32-bit OS. Needs gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, gcc-arm-linux-gnueabi and libc6-dev-armel-cross. The binaries are the ones "make cross" writes
# (bin/linux-<arch>/kvscamd); the rules below build them the same way.
DEB_DIR     := build/deb
DEB_VERSION  = $(shell packaging/deb/version.sh)
DEB_LDFLAGS  = -s -w -X main.version=$(DEB_VERSION) -X main.commit=$(COMMIT)
# Debian's hardening for the cgo part: fortified libc calls, stack
# protector, full RELRO with immediate binding.
DEB_CGO      = CGO_CFLAGS='-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong'
DEB_EXTLD    = -extldflags '-Wl,-z,relro -Wl,-z,now'
# ARMv6 with cgo (V4L2): Debian's armhf toolchain and libc are ARMv7, so
# the armel toolchain builds for ARMv6 and links statically, which makes
# the soft-float C ABI irrelevant on an armhf system.
DEB_CGO_ARMV6 = CGO_CFLAGS='-O2 -march=armv6 -marm -D_FORTIFY_SOURCE=2 -fstack-protector-strong'

deb: deb-amd64 deb-arm64 deb-armhf

deb-amd64: DEB_BIN = bin/linux-amd64/kvscamd
deb-arm64: DEB_BIN = bin/linux-arm64/kvscamd
deb-armhf: DEB_BIN = bin/linux-armv6/kvscamd
deb-amd64:
	$(DEB_CGO) CGO_ENABLED=1 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -buildmode=pie -ldflags "$(DEB_LDFLAGS) $(DEB_EXTLD)" -o $(DEB_BIN) ./daemon
	$(MAKE) --no-print-directory deb-package DEB_ARCH=amd64 DEB_BIN=$(DEB_BIN)
deb-arm64:
	$(DEB_CGO) CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc $(GO) build -trimpath -buildmode=pie -ldflags "$(DEB_LDFLAGS) $(DEB_EXTLD)" -o $(DEB_BIN) ./daemon
	$(MAKE) --no-print-directory deb-package DEB_ARCH=arm64 DEB_BIN=$(DEB_BIN)
deb-armhf:
	$(DEB_CGO_ARMV6) CGO_ENABLED=1 GOOS=linux GOARCH=arm GOARM=6 CC=arm-linux-gnueabi-gcc $(GO) build -trimpath -tags netgo,osusergo \
		-ldflags "$(DEB_LDFLAGS) -linkmode external -extldflags '-static -Wl,-z,relro -Wl,-z,now'" -o $(DEB_BIN) ./daemon
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

# 24 h of video per stream pushed through the whole pipeline as fast as it
# goes, a fault every SOAK_FAULT_EVERY, 1 GiB ring; fails when RSS,
# goroutines or open files grow. Plot and data in build/soak/.
SOAK_HOURS       ?= 24
SOAK_MAX_MINUTES ?= 240
SOAK_FAULT_EVERY ?= 2m
soak: build
	$(GO) run ./daemon/benchdaemon -mode soak -kvscamd $(BIN) -video-hours $(SOAK_HOURS) -minutes $(SOAK_MAX_MINUTES) -fault-every $(SOAK_FAULT_EVERY) -out build/soak

# The soak's three-minute variant for CI: same checks, a fault every 20 s.
test-soak-short: build
	$(GO) run ./daemon/benchdaemon -mode soak -kvscamd $(BIN) -minutes 3 -fault-every 20s -cred-lifetime 40s -out build/soak-short

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags faults ./daemon/faulttest/
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags faults ./daemon/faulttest/

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

# Cross builds for Raspberry Pis with cgo (V4L2). Needs Debian's
# gcc-aarch64-linux-gnu and gcc-arm-linux-gnueabihf. ARMv6 (Pi Zero/1) needs
# an ARMv6 toolchain for cgo; CGO_ENABLED=0 GOARM=6 builds run there without
# the V4L2 driver.
cross:
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kvscamd-linux-arm64 ./daemon
	CGO_ENABLED=1 GOOS=linux GOARCH=arm GOARM=7 CC=arm-linux-gnueabihf-gcc $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kvscamd-linux-armv7 ./daemon
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kvscamd-linux-armv6-nocgo ./daemon

clean:
	rm -rf bin/ demo-out/ build/
