//! Pieces of the `wasm-operator` command line that are not argument parsing:
//! how an error prints, and the namespace `plugin push` writes into.

pub mod namespace;
pub mod report;
