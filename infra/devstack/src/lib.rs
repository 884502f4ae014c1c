//! The local stack's tooling, used by `infra/dev` and by the test harness:
//! provisioning from `template.yaml`, the local event sources, dev tokens.

pub mod audit_shipper;
pub mod provision;
pub mod smoke;
pub mod sources;
pub mod streams;
pub mod template;

pub use provision::{LocalStack, provision};
pub use template::Template;

/// The OpenAPI description of the API as YAML, as `docs/openapi.yaml` holds it.
pub fn openapi_yaml() -> anyhow::Result<String> {
    let header =
        "# Generated from the code by `devstack openapi` (infra/dev openapi): do not edit.\n";
    Ok(format!(
        "{header}{}",
        serde_yaml_ng::to_string(&shared::openapi::document())?
    ))
}
