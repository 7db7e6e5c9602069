//! The examples users copy: every workflow's shell steps run for real against local servers,
//! and every ```console block in the docs runs and matches its output.

mod support;
