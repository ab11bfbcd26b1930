//! Table tests for path normalization, patterns, method sets and the route table.
use super::*;

/// Paths that normalize, with their canonical form.
const NORMALIZED: &[(&str, &str)] = &[
    ("/", "/"),
    ("/a/b", "/a/b"),
    ("/a/b/", "/a/b/"),
    ("//", "/"),
    ("///", "/"),
    ("//api///x", "/api/x"),
    ("//api/admin/x", "/api/admin/x"),
    ("/a//", "/a/"),
    ("/api/admin/../admin/x", "/api/admin/x"),
    ("/api/./admin", "/api/admin"),
    ("/a/b/../../c", "/c"),
    ("/a/b/..", "/a/"),
    ("/a/b/../", "/a/"),
    ("/a/b/.", "/a/b/"),
    ("/a/..", "/"),
    ("/a//..", "/"),
    ("/.", "/"),
    ("/./a", "/a"),
    ("/...", "/..."),
    ("/a..", "/a.."),
    ("/.a", "/.a"),
    ("/%2e%2e%2e", "/..."),
    ("/a/%41", "/a/A"),
    ("/a/%7e", "/a/~"),
    ("/a/%2d%2E%5f", "/a/-._"),
    ("/a%2A", "/a%2A"),
    ("/caf%c3%a9", "/caf%C3%A9"),
    ("/café", "/caf%C3%A9"),
    ("/日本", "/%E6%97%A5%E6%9C%AC"),
    ("/%F0%9F%98%80", "/%F0%9F%98%80"),
    ("/a%3Bb", "/a%3Bb"),
    ("/a%3bb", "/a%3Bb"),
    ("/a%23b%3f", "/a%23b%3F"),
    ("/a%20b", "/a%20b"),
    ("/a b", "/a%20b"),
    ("/a%252F", "/a%252F"),
    ("/a{b}", "/a%7Bb%7D"),
    ("/a\"<>^`|", "/a%22%3C%3E%5E%60%7C"),
    ("/user@host:8080/$&'()*+,=!", "/user@host:8080/$&'()*+,=!"),
    ("/API/Admin", "/API/Admin"),
];

/// Paths that must be refused, with the reason.
const REFUSED: &[(&str, PathError)] = &[
    ("", PathError::NotAbsolute),
    ("*", PathError::NotAbsolute),
    ("a/b", PathError::NotAbsolute),
    ("http://host/a", PathError::NotAbsolute),
    ("/api/admin%2Fx", PathError::EncodedSlash),
    ("/a%2f", PathError::EncodedSlash),
    ("/a%5Cb", PathError::EncodedBackslash),
    ("/a%5c", PathError::EncodedBackslash),
    ("/a\\b", PathError::Backslash),
    ("/a/..\\b", PathError::Backslash),
    ("/api/%2e%2e/admin", PathError::EncodedDotSegment),
    ("/api/.%2E/admin", PathError::EncodedDotSegment),
    ("/api/%2E./admin", PathError::EncodedDotSegment),
    ("/api/%2e", PathError::EncodedDotSegment),
    ("/a;b", PathError::Parameters),
    ("/a/b;jsessionid=1", PathError::Parameters),
    ("/..;/admin", PathError::Parameters),
    ("/a%00", PathError::ControlCharacter),
    ("/a\0", PathError::ControlCharacter),
    ("/a%0Ab", PathError::ControlCharacter),
    ("/a%0d%0aX-Injected:1", PathError::ControlCharacter),
    ("/a\tb", PathError::ControlCharacter),
    ("/a%7F", PathError::ControlCharacter),
    ("/a%C2%85", PathError::ControlCharacter),
    ("/a\u{85}", PathError::ControlCharacter),
    ("/a%C0%AF", PathError::InvalidUtf8),
    ("/a%FF", PathError::InvalidUtf8),
    ("/a%E6%97", PathError::InvalidUtf8),
    ("/a%C3a", PathError::InvalidUtf8),
    ("/a%C3/%A9", PathError::InvalidUtf8),
    ("/%ED%A0%80", PathError::InvalidUtf8),
    ("/..", PathError::AboveRoot),
    ("/../a", PathError::AboveRoot),
    ("/a/../..", PathError::AboveRoot),
    ("/a/../../b", PathError::AboveRoot),
    ("/a#b", PathError::Fragment),
    ("/a?b", PathError::Query),
    ("/a%", PathError::BadEscape),
    ("/a%2", PathError::BadEscape),
    ("/a%zz", PathError::BadEscape),
    ("/a%%41", PathError::BadEscape),
    ("/a%é1", PathError::BadEscape),
    ("/a%+1", PathError::BadEscape),
];

#[test]
fn paths_normalize_to_their_canonical_form() {
    for (raw, want) in NORMALIZED {
        assert_eq!(normalize(raw).as_deref(), Ok(*want), "normalize({raw:?})");
    }
}

#[test]
fn unsafe_paths_are_refused_with_their_reason() {
    for (raw, want) in REFUSED {
        assert_eq!(normalize(raw).as_ref(), Err(want), "normalize({raw:?})");
    }
}

#[test]
fn normalizing_twice_changes_nothing() {
    for (raw, _) in NORMALIZED {
        if let Ok(once) = normalize(raw) {
            assert_eq!(normalize(&once).as_ref(), Ok(&once), "normalize({raw:?})");
        }
    }
}

/// Every short path over an alphabet rich in troublemakers: no panic, and every success is
/// canonical, ASCII, free of dot and empty segments, and stable.
#[test]
fn every_short_path_normalizes_to_a_stable_canonical_form_or_is_refused() {
    let alphabet = ['/', '.', '%', '2', 'e', 'F', 'c', 'a', 'é', ';'];
    let everything = Pattern::parse("/**").unwrap();
    let mut stack = vec![String::from("/")];
    while let Some(raw) = stack.pop() {
        if let Ok(out) = normalize(&raw) {
            assert!(out.starts_with('/') && out.is_ascii(), "{raw:?} -> {out:?}");
            assert_eq!(normalize(&out).as_ref(), Ok(&out), "{raw:?} is not stable");
            let inner = out.strip_suffix('/').unwrap_or(&out);
            for segment in inner.split('/').skip(1) {
                assert!(!matches!(segment, "" | "." | ".."), "{raw:?} -> {out:?}");
            }
            assert!(everything.matches(&out).is_some());
        }
        if raw.chars().count() < 6 {
            for c in alphabet {
                stack.push(format!("{raw}{c}"));
            }
        }
    }
}

/// The one-pass check for paths already canonical agrees with the full
/// normalization on every short path, and the full one is not skipped for
/// anything it would change or refuse.
#[test]
fn the_canonical_shortcut_agrees_with_full_normalization() {
    let alphabet = ['/', '.', '%', '2', 'e', 'a', '-', '~', ';', '\\'];
    let mut stack = vec![String::new()];
    let mut shortcut = 0;
    while let Some(raw) = stack.pop() {
        if is_canonical(&raw) {
            shortcut += 1;
            assert_eq!(normalize_any(&raw).as_deref(), Ok(raw.as_str()), "{raw:?}");
        }
        assert_eq!(normalize(&raw), normalize_any(&raw), "{raw:?}");
        if raw.chars().count() < 6 {
            for c in alphabet {
                stack.push(format!("{raw}{c}"));
            }
        }
    }
    assert!(
        shortcut > 1000,
        "the shortcut is taken for plain paths ({shortcut})"
    );
}

#[test]
fn path_errors_read_as_short_lower_case_details() {
    assert_eq!(PathError::EncodedSlash.to_string(), "encoded slash in path");
    for (_, e) in REFUSED {
        let text = e.to_string();
        assert_eq!(text, text.to_lowercase());
    }
}

#[test]
fn bad_patterns_are_refused_with_a_message() {
    let cases: &[(&str, &str)] = &[
        ("", "must start with '/'"),
        ("api", "must start with '/'"),
        ("/a/**/b", "`**` must be the last segment"),
        ("/**/**", "`**` must be the last segment"),
        ("/{1d}", "capture name must be [A-Za-z_][A-Za-z0-9_]*"),
        ("/{}", "capture name must be"),
        ("/{a-b}", "capture name must be"),
        ("/{id}/{id}", "duplicate capture name \"id\""),
        ("/file.{ext}", "mixes text"),
        ("/{a}{b}", "capture name must be"),
        ("/a*", "mixes text"),
        ("/***", "mixes text"),
        ("/a/", "must not end with '/'"),
        ("/a//b", "empty segment"),
        ("//", "empty segment"),
        ("/a/..", "dot segments"),
        ("/./a", "dot segments"),
        ("/%41", "write \"A\""),
        ("/caf%c3%a9", "write \"caf%C3%A9\""),
        ("/café", "write \"caf%C3%A9\""),
        ("/a%2Fb", "can never match: encoded slash in path"),
        ("/a;b", "can never match"),
        ("/a?b", "can never match"),
        ("/%2e%2e", "can never match: encoded dot segment"),
        ("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", "at most 8 captures"),
    ];
    for (pattern, want) in cases {
        match Pattern::parse(pattern) {
            Ok(_) => panic!("{pattern:?} was accepted"),
            Err(e) => assert!(e.contains(want), "{pattern:?}: {e:?} lacks {want:?}"),
        }
    }
}

#[test]
fn good_patterns_keep_their_text_and_capture_names() {
    let cases: &[(&str, &[&str])] = &[
        ("/", &[]),
        ("/**", &[]),
        ("/api/{tenant}/items/{item_id}", &["tenant", "item_id"]),
        ("/api/*/x/{_a1}/**", &["_a1"]),
        ("/caf%C3%A9/v1.2/~me/a%20b/$x:y@z", &[]),
    ];
    for (text, names) in cases {
        let pattern = Pattern::parse(text).unwrap();
        assert_eq!(pattern.as_str(), *text);
        assert_eq!(pattern.capture_names().collect::<Vec<_>>(), *names);
    }
}

#[test]
fn patterns_match_normalized_paths_and_capture_segments() {
    // (pattern, path, captures when it matches)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static [(&'static str, &'static str)]>,
    );
    let cases: &[Case] = &[
        ("/", "/", Some(&[])),
        ("/", "/a", None),
        ("/a/b", "/a/b", Some(&[])),
        ("/a/b", "/a/b/", None),
        ("/a/b", "/a", None),
        ("/a/b", "/a/b/c", None),
        ("/a/b", "/A/b", None),
        ("/api/{id}", "/api/42", Some(&[("id", "42")])),
        ("/api/{id}", "/api/", None),
        ("/api/{id}", "/api", None),
        ("/api/{id}", "/api/42/x", None),
        ("/api/{id}", "/api/caf%C3%A9", Some(&[("id", "caf%C3%A9")])),
        (
            "/t/{tenant}/i/{item}",
            "/t/acme/i/7",
            Some(&[("tenant", "acme"), ("item", "7")]),
        ),
        ("/api/*", "/api/x", Some(&[])),
        ("/api/*", "/api/", None),
        ("/api/*/{x}", "/api/a/b", Some(&[("x", "b")])),
        ("/{a}/**", "/x/y/z", Some(&[("a", "x")])),
        ("/{a}/**", "/", None),
    ];
    for (text, path, want) in cases {
        let pattern = Pattern::parse(text).unwrap();
        let got = pattern.matches(path);
        let got: Option<Vec<(&str, &str)>> = got.as_ref().map(|c| c.iter().collect());
        assert_eq!(got.as_deref(), *want, "{text:?} against {path:?}");
    }
}

#[test]
fn double_star_matches_zero_or_more_trailing_segments() {
    let cases: &[(&str, &str, bool)] = &[
        ("/api/admin/**", "/api/admin", true),
        ("/api/admin/**", "/api/admin/", true),
        ("/api/admin/**", "/api/admin/x", true),
        ("/api/admin/**", "/api/admin/x/y/", true),
        ("/api/admin/**", "/api/administrator", false),
        ("/api/admin/**", "/api", false),
        ("/api/admin/**", "/api/Admin/x", false),
        ("/**", "/", true),
        ("/**", "/anything/at/all", true),
        ("/**", "", false),
    ];
    for (text, path, want) in cases {
        let got = Pattern::parse(text).unwrap().matches(path).is_some();
        assert_eq!(got, *want, "{text:?} against {path:?}");
    }
}

#[test]
fn captures_answer_by_name() {
    let pattern = Pattern::parse("/t/{tenant}/i/{item}").unwrap();
    let captures = pattern.matches("/t/acme/i/7").unwrap();
    assert_eq!(captures.get("tenant"), Some("acme"));
    assert_eq!(captures.get("item"), Some("7"));
    assert_eq!(captures.get("other"), None);
    assert_eq!(
        format!("{captures:?}"),
        r#"{"tenant": "acme", "item": "7"}"#
    );
}

#[test]
fn covers_holds_only_when_every_path_of_the_other_pattern_matches() {
    let cases: &[(&str, &str, bool)] = &[
        ("/api/**", "/api/admin/**", true),
        ("/api/**", "/api/{id}", true),
        ("/api/**", "/api", true),
        ("/api/**", "/api/**", true),
        ("/api/*", "/api/{id}", true),
        ("/api/{id}", "/api/*", true),
        ("/api/{id}", "/api/x", true),
        ("/a/b", "/a/b", true),
        ("/**", "/", true),
        ("/**", "/{a}/b/**", true),
        ("/a/b", "/a/c", false),
        ("/a/b", "/a/b/c", false),
        ("/a/b", "/a", false),
        ("/a/b", "/a/{x}", false),
        ("/a/b", "/a/**", false),
        ("/api/admin/**", "/api/**", false),
        ("/api/{id}", "/api/**", false),
        ("/api/{id}", "/api", false),
        ("/", "/**", false),
        ("/api/*/x", "/api/{id}/y", false),
    ];
    for (a, b, want) in cases {
        let (pa, pb) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
        assert_eq!(pa.covers(&pb), *want, "{a:?} covers {b:?}");
    }
}

fn methods(names: &[&str]) -> MethodSet {
    MethodSet::parse_list(names.iter().copied()).unwrap()
}

#[test]
fn method_sets_admit_their_methods_and_get_brings_head() {
    let extension = Method::from_bytes(b"PURGE").unwrap();
    let cases: &[(MethodSet, &Method, bool)] = &[
        (methods(&["GET"]), &Method::GET, true),
        (methods(&["GET"]), &Method::HEAD, true),
        (methods(&["GET"]), &Method::POST, false),
        (methods(&["HEAD"]), &Method::GET, false),
        (methods(&["POST"]), &Method::GET, false),
        (methods(&["POST"]), &Method::HEAD, false),
        (methods(&["POST", "DELETE"]), &Method::DELETE, true),
        (methods(&["OPTIONS"]), &Method::OPTIONS, true),
        (
            methods(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            &extension,
            false,
        ),
        (MethodSet::any(), &Method::GET, true),
        (MethodSet::any(), &Method::PATCH, true),
        (MethodSet::any(), &Method::TRACE, false),
        (MethodSet::any(), &extension, false),
        (methods(&["PURGE"]), &extension, true),
        (methods(&["PURGE"]), &Method::GET, false),
        (methods(&["purge"]), &extension, false),
    ];
    for (set, method, want) in cases {
        assert_eq!(
            set.admits(method),
            *want,
            "{:?} admits {method}",
            set.names()
        );
    }
}

#[test]
fn bad_method_lists_are_refused_with_the_allowed_values() {
    let cases: &[(&[&str], &str)] = &[
        (&["TRACE"], "always answered with 405"),
        (&["GET", "CONNECT"], "always answered with 405"),
        (&["get"], "methods are upper-case"),
        (&["Delete"], "methods are upper-case"),
        (&["BAD METHOD"], "not an HTTP token"),
        (&[], "must not be empty"),
    ];
    for (names, want) in cases {
        let e = MethodSet::parse_list(names.iter().copied()).unwrap_err();
        assert!(e.contains(want), "{names:?}: {e:?} lacks {want:?}");
        if !names.is_empty() {
            assert!(
                e.contains("allowed: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                "{e}"
            );
        }
    }
}

#[test]
fn method_sets_compare_and_name_themselves() {
    assert!(MethodSet::any().is_superset_of(&methods(&["POST"])));
    // Without `methods`, a route admits exactly the standard methods.
    assert_eq!(
        methods(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        MethodSet::any()
    );
    assert!(methods(&["GET"]).is_superset_of(&methods(&["HEAD"])));
    assert!(!methods(&["HEAD"]).is_superset_of(&methods(&["GET"])));
    assert!(methods(&["GET", "POST"]).is_superset_of(&methods(&["POST"])));
    assert!(!methods(&["POST"]).is_superset_of(&methods(&["GET", "POST"])));
    assert_eq!(methods(&["GET"]), methods(&["HEAD", "GET"]));
    assert_eq!(MethodSet::any().names(), vec!["*"]);
    assert_eq!(
        methods(&["POST", "GET"]).names(),
        vec!["GET", "HEAD", "POST"]
    );
    assert_eq!(
        methods(&["PROPFIND", "GET"]).names(),
        vec!["GET", "HEAD", "PROPFIND"]
    );
    assert!(methods(&["PROPFIND", "GET"]).is_superset_of(&methods(&["PROPFIND"])));
    assert!(!MethodSet::any().is_superset_of(&methods(&["PROPFIND"])));
}

fn table(routes: &[(&str, Option<&[&str]>)]) -> RouteTable {
    RouteTable::new(
        routes
            .iter()
            .map(|(p, m)| {
                (
                    Pattern::parse(p).unwrap(),
                    m.map_or(MethodSet::any(), methods),
                )
            })
            .collect(),
    )
}

#[test]
fn first_matching_route_in_file_order_wins() {
    let routes = table(&[
        ("/api/admin/**", Some(&["POST"])),
        ("/api/{id}", None),
        ("/api/**", Some(&["GET"])),
        ("/api/fixed", None),
    ]);
    // (method, path, winning index, captured id)
    let cases: &[(Method, &str, Option<usize>, Option<&str>)] = &[
        (Method::POST, "/api/admin/x", Some(0), None),
        (Method::GET, "/api/admin/x", Some(2), None),
        (Method::HEAD, "/api/admin/x", Some(2), None),
        (Method::DELETE, "/api/admin/x", None, None),
        (Method::GET, "/api/fixed", Some(1), Some("fixed")),
        (Method::GET, "/api/admin", Some(1), Some("admin")),
        (Method::POST, "/api/admin", Some(0), None),
        (Method::GET, "/other", None, None),
        (Method::GET, "/", None, None),
    ];
    for (method, path, index, id) in cases {
        let found = routes.find(method, path);
        assert_eq!(found.as_ref().map(|m| m.index), *index, "{method} {path}");
        assert_eq!(
            found.and_then(|m| m.captures.get("id")),
            *id,
            "{method} {path}"
        );
    }
    assert_eq!(routes.entries()[2].0.as_str(), "/api/**");
}

#[test]
fn shadowed_routes_name_the_first_earlier_route_that_hides_them() {
    let routes = table(&[
        ("/api/**", Some(&["GET"])),
        ("/api/{id}", Some(&["GET"])),
        ("/api/{id}", Some(&["POST"])),
        ("/api/x", Some(&["HEAD"])),
        ("/**", None),
        ("/health", None),
        ("/api/y", Some(&["POST"])),
    ]);
    assert_eq!(routes.shadowed(), vec![(1, 0), (3, 0), (5, 4), (6, 2)]);
    assert!(table(&[("/a", None), ("/b", None)]).shadowed().is_empty());
}
