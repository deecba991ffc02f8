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

.PHONY: all build kvslocal demo test test-go test-systemd bench bench-daemon soak test-soak-short lint fuzz torture cross clean

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
test: test-soak-short

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# Unit, sysusers and tmpfiles checks; needs systemd-analyze (package systemd).
test-systemd: build
	bash systemd/verify.sh $(BIN)

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
	$(GO) run $(STATICCHECK) ./...

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
