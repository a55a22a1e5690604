//! The appliance's side of the control plane: the wire types shared with
//! `steering`, and a client that keeps working from cached answers when the
//! control plane is unreachable.

pub mod client;
pub mod enrol;
pub mod retry;
pub mod urls;
pub mod wire;

pub use client::{
    ClientError, ControlClient, admin_client, http_client, read_token, tls_client_config,
};
pub use retry::{Breaker, RetryPolicy};
pub use urls::Urls;
