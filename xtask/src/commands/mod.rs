//! One module per `cargo xtask` command, each with its flags (`…Args`) and a `handle`.

pub mod bench;
pub mod check_backends;
pub mod device_bundle;
pub mod gradcheck_full;
pub mod profile;
pub mod reproduce;
pub mod study;
pub mod torchvision_parity;
