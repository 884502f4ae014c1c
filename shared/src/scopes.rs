//! The scopes a token may hold (from its `scope`/`scopes` claims and its roles, see
//! [`crate::auth::role_scopes`]); routes name the ones that admit a caller ([`crate::routes`]).
//! Apart from `auth` so that the route table needs nothing else.

pub const TASKS_SUBMIT: &str = "tasks:submit";
pub const TASKS_READ: &str = "tasks:read";
pub const REVIEWS_READ: &str = "reviews:read";
pub const REVIEWS_WRITE: &str = "reviews:write";
pub const REVIEWS_ADMIN: &str = "reviews:admin";
pub const REPORTS_READ: &str = "reports:read";
