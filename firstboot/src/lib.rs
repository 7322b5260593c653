//! keel-firstboot: applies an Ignition v3 config once, all or nothing.
//!
//! Not built yet: the crate exists so the workspace has its final shape.
//! Images built today contain no first-boot program, and nothing in them
//! claims to apply Ignition configs.
