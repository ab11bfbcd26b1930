//! Replays the fuzz seed corpora (`fuzz/seeds/<target>/*`) through the same
//! property checks the `cargo fuzz` targets run, so every seed (and every
//! crash a fuzzer once found, saved there) stays a regression test.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a readable seed").path();
        let bytes = std::fs::read(&path).expect("seed file");
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "seed {} violates {target}", path.display());
        n += 1;
    }
    n
}

#[test]
fn token_seeds_hold_the_verification_properties() {
    assert!(
        replay(
            "token_verification",
            portcullis::invariants::token_verification
        ) >= 5
    );
}

#[test]
fn path_seeds_normalize_idempotently_and_route_alike() {
    assert!(
        replay(
            "path_normalization",
            portcullis::invariants::path_normalization
        ) >= 5
    );
}

#[test]
fn header_seeds_never_leave_a_protected_header() {
    assert!(
        replay(
            "header_sanitizing",
            portcullis::invariants::header_sanitizing
        ) >= 3
    );
}

#[test]
fn request_head_seeds_parse_alike_twice_and_pass_framing_only_when_unambiguous() {
    assert!(
        replay(
            "request_head_framing",
            portcullis::invariants::request_head_framing
        ) >= 5
    );
}

#[test]
fn chunked_seeds_decode_alike_whatever_the_read_sizes() {
    assert!(replay("chunked_decoding", portcullis::invariants::chunked_decoding) >= 5);
}

#[test]
fn answer_head_seeds_tunnel_only_when_asked_and_pass_no_hop_by_hop_field() {
    assert!(
        replay(
            "upstream_answer_head",
            portcullis::invariants::upstream_answer_head
        ) >= 5
    );
}

#[test]
fn byte_streams_reach_the_upstream_as_the_same_requests_with_the_same_bodies() {
    assert!(
        replay(
            "request_round_trip",
            portcullis::invariants::request_round_trip
        ) >= 5
    );
}

#[test]
fn config_seeds_load_or_fail_with_positioned_errors() {
    assert!(replay("config_loading", portcullis::invariants::config_loading) >= 3);
}

/// The valid seed must really be accepted, or the token target explores only refusals.
#[test]
fn the_valid_token_seed_is_accepted() {
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/token_verification/valid"),
    )
    .unwrap();
    let keys = portcullis::token::Keys::hs256(
        portcullis::invariants::FUZZ_SECRET,
        "hs256",
        "https://gw.test",
        "api",
        std::time::Duration::from_secs(5),
    );
    assert_eq!(keys.verify(&seed, 1_800_000_000).unwrap().sub, "u1");
}
