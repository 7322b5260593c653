//! dm-verity: placeholder replaced by the verity module
