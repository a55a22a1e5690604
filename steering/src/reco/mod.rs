//! Recommendations: the model (pure functions of play history), its offline
//! evaluation, and `steering recommender`, the service that trains it on a
//! schedule and answers each profile's rows.
//!
//! The service is a process of its own, not a module of steering's request
//! path: training takes seconds of CPU and memory proportional to the
//! history, which must not compete with plays, and an operator can stop,
//! restart or scale it apart. steering reaches it through
//! `[recommendations] url`, behind its timeout and circuit breaker, and caches
//! each profile's rows, so the home page does not depend on it being up.

pub mod eval;
pub mod model;
pub mod service;
