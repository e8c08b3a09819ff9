//! Property tests of the pure core against hostile input: the path policy, the canonical
//! encoding, shard assignment and the parsers of flags and annotations never panic, and keep
//! their guarantees for every input.

use proptest::prelude::*;
use secops::domain::fingerprint::{canonical_encoding, Fingerprint, FingerprintKey};
use secops::domain::path::{validate_path, AllowedPaths};
use secops::domain::provenance::Origin;
use secops::domain::rotation::validate_rotation_id;
use secops::domain::shard::Shard;
use secops::domain::SecretRef;
use secops::secret::{SecretBytes, SecretData};

fn data(pairs: &[(String, Vec<u8>)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), SecretBytes::new(v.clone())))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_default_policy_never_lets_a_namespace_escape(ns in "[a-z][a-z0-9-]{0,20}", path in "\\PC{0,80}") {
        let policy = AllowedPaths::new(vec![]).unwrap();
        if validate_path(&path).is_ok() && policy.allows(&ns, &path) {
            let inside = path == ns || path.starts_with(&format!("{}/", ns));
            prop_assert!(inside, "{} escapes {}", path, ns);
            prop_assert!(!path.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
            prop_assert!(!path.starts_with("secops/") && path != "secops");
        }
    }

    #[test]
    fn traversal_and_control_characters_are_always_invalid(prefix in "[a-z/]{0,10}", bad in prop::sample::select(vec!["..", ".", "", "\0", "\n", "\u{7f}", " ", "%2e%2e"]), suffix in "[a-z/]{0,10}") {
        let path = if bad.len() <= 2 && !bad.contains('\0') && !bad.contains('\n') && bad != "\u{7f}" && bad != " " {
            format!("{prefix}/{bad}/{suffix}")
        } else {
            format!("{prefix}{bad}{suffix}")
        };
        prop_assert!(validate_path(&path).is_err(), "{:?}", path);
    }

    #[test]
    fn glob_matching_never_panics(pattern in "[a-z*/{}]{0,30}", ns in "[a-z]{1,8}", path in "[a-z*/.]{0,40}") {
        if let Ok(policy) = AllowedPaths::new(vec![pattern]) {
            let _ = policy.allows(&ns, &path);
        }
    }

    #[test]
    fn the_canonical_encoding_is_injective(a in prop::collection::btree_map("[a-c]{0,3}", prop::collection::vec(any::<u8>(), 0..4), 0..4),
                                           b in prop::collection::btree_map("[a-c]{0,3}", prop::collection::vec(any::<u8>(), 0..4), 0..4)) {
        let (a, b): (Vec<_>, Vec<_>) = (a.into_iter().collect(), b.into_iter().collect());
        let (ea, eb) = (canonical_encoding(&data(&a)), canonical_encoding(&data(&b)));
        prop_assert_eq!(a == b, *ea == *eb);
        let key = FingerprintKey::new(vec![7; 32]).unwrap();
        let at = secops::domain::bootstrap::Target { mount: "secret".into(), path: "a/b".into() };
        prop_assert_eq!(a == b, key.fingerprint(&at, &data(&a)) == key.fingerprint(&at, &data(&b)));
    }

    #[test]
    fn every_uid_has_exactly_one_shard(uid in "\\PC{0,64}", count in 1u32..64) {
        let owners = (0..count).filter(|index| Shard { index: *index, count }.contains(&uid)).count();
        prop_assert_eq!(owners, 1);
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,200}") {
        let _ = SecretRef::parse(&text);
        let _ = Shard::parse(&text);
        let _ = Fingerprint::parse(&text);
        let _ = validate_rotation_id(&text);
        let _ = Origin::parse(&text);
    }

    #[test]
    fn origins_round_trip(ns in "[a-z][a-z0-9-]{0,10}", name in "[a-z][a-z0-9.-]{0,10}[a-z0-9]") {
        for text in [format!("bootstrap:{ns}/{name}"), format!("push:{ns}/{name}")] {
            prop_assert_eq!(Origin::parse(&text).to_string(), text);
        }
    }
}

#[test]
fn huge_inputs_are_refused_quickly() {
    let megabyte = "a/".repeat(512 * 1024);
    assert!(validate_path(&megabyte).is_err());
    assert!(SecretRef::parse(&format!("ns/{}", "a".repeat(1 << 20))).is_err());
}
