//! The OCI distribution protocol as tagwarden sees it: references, routes, media types
//! and error bodies. Nothing here does I/O.

pub mod code;
pub mod error;
pub mod link;
pub mod media;
pub mod reference;
pub mod route;

pub use code::ErrorCode;
pub use error::OciError;
pub use reference::{Digest, Name, Reference, Tag};
pub use route::Route;
