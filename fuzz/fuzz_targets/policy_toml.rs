//! The TOML policy loader over any text: never panics; whatever it accepts, it allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::policy::parse_entry;
use picklefence::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::from_toml_str(text) {
        let _ = policy.name();
        for code in policy.ext_codes() {
            assert!(policy.is_ext_code_allowed(code));
        }
    }
    // Each line as an allowlist entry.
    for line in text.lines().take(64) {
        if let Ok((module, name)) = parse_entry(line) {
            let policy = Policy::empty()
                .with_allowed([line])
                .expect("parse_entry accepted it");
            assert!(
                policy.is_allowed(&module, &name),
                "{line:?} accepted but not allowed"
            );
        } else {
            assert!(Policy::empty().with_allowed([line]).is_err());
        }
    }
});
