//! `oca`: the edge appliance daemon. Serves immutable video objects from local
//! disks over HTTP/1.1 with zero-copy sendfile, and reports health and metrics.

pub mod access;
pub mod admin;
pub mod admin_auth;
pub mod bgp;
pub mod cli;
pub mod cold;
pub mod config;
pub mod control;
pub mod filecache;
pub mod http;
pub mod metrics;
pub mod mime;
pub mod path;
pub mod plan;
pub mod server;
pub mod store;
pub mod sys;
pub mod tls;
pub mod tools;

pub use config::Config;
pub use server::Server;
