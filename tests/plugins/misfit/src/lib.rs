//! A perfectly valid component that is not a stateplug backend.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    inline: "package test:misfit; world greeter { export hello: func() -> string; }",
    world: "greeter",
});

struct Greeter;

impl Guest for Greeter {
    fn hello() -> String {
        "hello".into()
    }
}

export!(Greeter);
