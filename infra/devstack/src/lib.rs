//! The local stack's tooling, used by `infra/dev` and by the test harness:
//! provisioning from `template.yaml`, the local event sources, dev tokens.

pub mod provision;
pub mod smoke;
pub mod sources;
pub mod template;

pub use provision::{LocalStack, provision};
pub use template::Template;
