//! Any text as a mesh-lab scenario file (TOML or JSON) through
//! `Scenario::parse`: a scenario or an error, never a panic. A scenario that
//! parses is valid, and written back as JSON it parses to the same scenario.

#![no_main]

use backchannel::lab::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = Scenario::parse(text) else {
        return;
    };
    scenario.validate().expect("a parsed scenario is valid");
    let json = serde_json::to_value(&scenario).expect("a scenario serializes");
    let again = Scenario::parse(&json.to_string()).expect("the JSON of a valid scenario parses");
    assert_eq!(serde_json::to_value(&again).expect("serializes"), json);
});
