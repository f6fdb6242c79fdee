//! Any bytes through the EWS parser: it must return, never panic, and bound its work.
#![no_main]

use herald_gateway::{Limits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = parse(body, &Limits::default());
});
