//! oca-pack: per-title encoding. Trial encodes measure a title's rate–quality
//! curves (`analyze`), a pure function picks its ladder from them (`ladder`),
//! and `encode` encodes that ladder and packages it as fMP4 HLS and DASH in the
//! layout `steering catalog import` reads (`package`).
#![forbid(unsafe_code)]

pub mod analyze;
pub mod bdrate;
pub mod bench;
pub mod cenc;
pub mod classes;
pub mod cli;
pub mod encode;
pub mod jobs;
pub mod ladder;
pub mod metric;
pub mod package;
pub mod tool;
