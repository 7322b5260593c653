# Keel: the two commands are `make image` and `make test` (see README.md).

CARGO   ?= cargo
TARGET  := x86_64-unknown-linux-gnu
CONFIG  ?= image-configs/containerd.toml
OUT     ?= out
INIT    := target/$(TARGET)/release/keel-init
FIRSTBOOT := target/$(TARGET)/release/keel-firstboot
OSBUILD := target/release/osbuild

export KEEL_INIT_BINARY := $(CURDIR)/$(INIT)
export KEEL_FIRSTBOOT_BINARY := $(CURDIR)/$(FIRSTBOOT)
export KEEL_OSBUILD := $(CURDIR)/$(OSBUILD)
export KEEL_OUT := $(CURDIR)/$(OUT)

.PHONY: all deps init osbuild image test lint unit bench bench-boot fuzz clean

all: image

## Install the host packages the build and the tests need (if missing).
deps:
	./scripts/install-deps.sh

## keel-init runs as PID 1 before any library exists, and keel-firstboot
## must not depend on the image's libraries: link both statically.
init:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --target $(TARGET) -p keel-init -p keel-firstboot

osbuild:
	$(CARGO) build --release --locked -p osbuild

## The main job: host packages, tools, and the default image in $(OUT)/.
image: deps init osbuild
	$(OSBUILD) build $(CONFIG) --out $(OUT) --init-binary $(INIT) --firstboot-binary $(FIRSTBOOT)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## Everything: lint, unit tests, image checks, reproducibility, QEMU boots.
test: image lint
	./qemu-tests/fetch-test-kernel.sh
	$(CARGO) test --locked --workspace --no-fail-fast -- --test-threads=2

## Cold and warm build times and sizes next to mmdebstrap (docs/performance.md).
bench: deps init osbuild
	./scripts/bench-build.sh $(CONFIG)

## Boot times and memory of the default image under QEMU (docs/performance.md).
bench-boot: image
	$(CARGO) run --release --locked -p qemu-tests --example bench_boot -- $(BENCH_ARGS)

## The cargo-fuzz targets, FUZZ_SECONDS (default 600) each; not part of
## `make test` (docs/testing.md, "Fuzzing"). FUZZ_TARGETS picks some.
fuzz:
	./scripts/fuzz.sh $(FUZZ_TARGETS)

clean:
	rm -rf $(OUT)
