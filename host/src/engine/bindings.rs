//! The generated bindings of `wit/drain.wit`, and nothing else.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "drain-policy",
});

pub use exports::sluice::drain::policy::PolicyInfo;
