//! The mapping engine: the public API declared in `mappings/*.yaml`, compiled into a
//! [`model::Plan`] that the request path executes (`exec`).

pub mod compile;
pub mod dialect;
pub mod exec;
pub mod model;
pub mod raw;
pub mod search;
pub mod time;
pub mod tpl;
pub mod transform;
pub mod versions;
mod versions_check;
pub mod view;
mod write;

pub use compile::{load_dir, load_shipped, Context};
pub use dialect::Trust;
pub use model::Plan;
