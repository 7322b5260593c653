#!/bin/sh
# Fetch the kernel and the few modules that tests/harness.rs boots with busybox:
# Debian's cloud kernel from the host's apt sources, into ${KEEL_TEST_KERNEL_DIR:-~/.cache/keel/test-kernel}.
set -eu
dest=${KEEL_TEST_KERNEL_DIR:-$HOME/.cache/keel/test-kernel}
if [ -f "$dest/vmlinuz" ] && [ -f "$dest/modules/qemu_fw_cfg.ko" ]; then exit 0; fi
pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' \
    | cut -d' ' -f1 | sort -V | tail -n1)
[ -n "$pkg" ] || { echo "no linux-image-6.1.0-*-cloud-amd64 in apt sources" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$pkg")
dpkg-deb -x "$work"/*.deb "$work/x"
mkdir -p "$dest/modules"
cp "$work"/x/boot/vmlinuz-* "$dest/vmlinuz"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
    failover net_failover virtio_net qemu_fw_cfg; do
    find "$work/x/lib/modules" -name "$m.ko" -exec cp {} "$dest/modules/" \;
    [ -f "$dest/modules/$m.ko" ] || { echo "module $m.ko not found in $pkg" >&2; exit 1; }
done
echo "kernel and modules of $pkg in $dest"
