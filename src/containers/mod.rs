//! Containers watched like units (`[[container]]`): the Docker Engine API
//! that dockerd and Podman's Docker-compatible service answer over their
//! unix socket. engine.rs is the client (requests with deadlines, and the
//! `/events` stream that tells a container's death in milliseconds, as
//! D-Bus signals tell a unit's); api.rs the parts of its answers that are
//! read.

pub mod api;
pub mod engine;
pub mod sample;
pub mod watch;

pub use api::{Event, Inspect, MemoryUse, Summary};
pub use engine::{Engine, EngineError, Events};
