//! QEMU harness (being written).
