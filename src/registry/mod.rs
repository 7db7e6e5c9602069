//! Registry backends: observe live state, plan, apply and undo steps.

pub mod oci;
