//! Any text must parse and evaluate to a value or a typed error, never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sealrs::kubefile::{evaluate, evaluate_from, parse, ConfigState, EvalOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(kubefile) = parse(text, "fuzz/Kubefile") else {
        return;
    };
    let opts = EvalOptions {
        build_args: BTreeMap::from([
            ("NAME".to_string(), "value with spaces".to_string()),
            ("VERSION".to_string(), "$X".to_string()),
        ]),
        target_os: "linux".to_string(),
        target_arch: "amd64".to_string(),
    };
    let _ = evaluate_from(&kubefile, &opts);
    let _ = evaluate(&kubefile, &opts, ConfigState::scratch());
    let _ = evaluate(&kubefile, &EvalOptions::default(), ConfigState::default());
});
