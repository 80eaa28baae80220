//! A broker properties text, parsed and turned into a `BrokerConfig` as `gregor --config`
//! does: either a configuration or a `ConfigError`, never a panic.

#![no_main]

use gregor::config::BrokerConfig;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: gregor_fuzz::BoundedAlloc = gregor_fuzz::BoundedAlloc;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(props) = BrokerConfig::parse_properties(&text) else {
        return;
    };
    if let Ok(config) = BrokerConfig::from_props(props) {
        // What start-up reads from a validated configuration.
        let _ = config.advertised();
        let _ = config.controller_listener();
        for l in &config.listeners {
            let _ = l.bind_addr();
        }
    }
});
