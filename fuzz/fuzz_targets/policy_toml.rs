//! The TOML policy loader over any text: never panics; whatever it accepts, it allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picklefence::policy::{danger_reason, parse_user_entry, PolicyError};
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
    // Each line as an allowlist entry: accepted exactly when it parses, and then allowed;
    // without the opt-in, refused exactly when the name is dangerous.
    for line in text.lines().take(64) {
        if let Ok((module, name, _)) = parse_user_entry(line, "") {
            let policy = Policy::empty()
                .with_allowed_dangerous([line])
                .expect("parse_user_entry accepted it");
            assert!(
                policy.is_allowed(&module, &name),
                "{line:?} accepted but not allowed"
            );
            let plain = Policy::empty().with_allowed([line]);
            match danger_reason(&module, &name) {
                Some(_) => assert!(matches!(plain, Err(PolicyError::Dangerous { .. }))),
                None => assert!(plain.is_ok(), "{line:?} refused without a danger reason"),
            }
        } else {
            assert!(Policy::empty().with_allowed_dangerous([line]).is_err());
        }
    }
});
