#![deny(clippy::all)]
//! redfour-native: a distributed lock on Redis, wire-compatible with the npm package `redfour`.
//!
//! `core` is the engine (no napi); `binding` exposes it to Node.js when built with the default
//! `node` feature.

pub mod core;

#[cfg(feature = "node")]
mod binding;
