#![deny(clippy::all)]
//! redfour-native: a distributed lock on Redis, wire-compatible with the npm package `redfour`.
//!
//! `core` is the engine (no napi); `binding` exposes it to Node.js when built with the default
//! `node` feature; `busy_poll` keeps the engine's runtime thread awake around the binding's calls.

pub mod core;

#[cfg(feature = "node")]
mod binding;
pub mod busy_poll;
