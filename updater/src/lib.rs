//! keel-update: moves a node between releases with A/B root slots.
//!
//! Not built yet: the crate exists so the workspace has its final shape.
//! Images built today reserve the second slot (`root-b`) but contain no
//! update agent.
