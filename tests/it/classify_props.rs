//! Property tests of parse + classify: arbitrary bytes and random but
//! mail-shaped messages never panic, and every invitation keeps the rules:
//! nobody invited is the survey address, the sender, a consultant or a
//! colleague; nobody is invited twice; never more than the per-message cap;
//! and nobody is invited who is not named in the message. Bounces, opt-outs
//! and replies keep theirs: a bounced recipient's `permanent` agrees with the
//! class of its status code when it has one (5 permanent, 4 temporary); the
//! Message-IDs reported are canvass' own shape; an opt-out or a reply never
//! comes from a configured consultant or the survey address.

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use canvass::address;
use canvass::classify::{
    addresses_in_body, classify_raw, BounceReport, Decision, Trigger, TriggerKind,
};
use canvass::config::Config;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

/// The fixture configs: config.toml with the default cap (20); the same with a
/// cap of 3, so random messages reach it; config-authserv.toml with a cap of 3.
fn configs() -> &'static [Config; 3] {
    static CONFIGS: OnceLock<[Config; 3]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify");
        let load = |name: &str| {
            Config::load(&dir.join(name)).unwrap_or_else(|e| panic!("fixture config {name}:\n{e}"))
        };
        let plain = load("config.toml");
        let mut small = load("config.toml");
        small.sending.max_invitees_per_message = 3;
        let mut authserv = load("config-authserv.toml");
        authserv.sending.max_invitees_per_message = 3;
        [plain, small, authserv]
    })
}

fn consultants() -> Vec<String> {
    configs()[0]
        .regions
        .iter()
        .flat_map(|r| r.consultants.iter().map(|a| a.to_string()))
        .collect()
}

/// Checks every invariant of a decision; `source` is the message before any
/// transfer encoding (lower-cased), where every invitee must be named.
fn check(decision: &Decision, cfg: &Config, received: DateTime<Utc>, source: Option<&str>) {
    serde_json::to_string(decision).expect("a decision serialises");
    let t = match decision {
        Decision::Invite(t) => t,
        Decision::Bounce(b) => return check_bounce(b, cfg),
        Decision::Complaint(c) => {
            // An address alone is believed only from a configured sender
            // the trust setting authenticated, and never beside a Message-ID.
            if c.trusted_by.is_some() {
                assert!(
                    c.message_ids.is_empty() && !c.named.is_empty(),
                    "a vouched complaint with a Message-ID or naming nobody: {c:?}"
                );
                assert!(
                    !cfg.trust.complaint_senders.is_empty() && cfg.trust.authserv_id.is_some(),
                    "a complaint vouched for without a configured sender and trust: {c:?}"
                );
            }
            return check_message_ids(&c.message_ids, cfg);
        }
        Decision::OptOut {
            proof: canvass::classify::Proof::MessageId,
            message_ids,
            ..
        } if message_ids.is_empty() => panic!("an opt-out proven by no Message-ID"),
        Decision::OptOut {
            proof: canvass::classify::Proof::Authenticated,
            ..
        } if cfg.trust.authserv_id.is_none() => {
            panic!("an opt-out authenticated without a trusted authserv-id")
        }
        Decision::OptOut {
            from, message_ids, ..
        }
        | Decision::Reply {
            from, message_ids, ..
        } => {
            assert!(
                !cfg.is_consultant(from),
                "consultant {from} made a {}",
                decision.label()
            );
            assert_ne!(
                *from,
                cfg.survey_address,
                "the survey address made a {}",
                decision.label()
            );
            // A reply refers to canvass mail, unless it is an opt-out that
            // proved nothing (a person reads it instead).
            if let Decision::Reply { .. } = decision {
                assert!(
                    !message_ids.is_empty() || decision_asks_opt_out(source),
                    "a reply that refers to no canvass mail"
                );
            }
            return check_message_ids(message_ids, cfg);
        }
        Decision::Refuse { .. } | Decision::Ignore { .. } => return,
    };
    check_trigger(t, cfg);
    assert!(
        cfg.window.contains(received),
        "invited outside the window: {received}"
    );
    if let Some(source) = source {
        for a in &t.invitees {
            assert!(
                spelled_in(source, a.as_str()),
                "invited {a}, who is not named in the message"
            );
        }
    }
}

fn check_trigger(t: &Trigger, cfg: &Config) {
    assert!(
        t.kind != TriggerKind::Manual,
        "a message never makes a manual trigger"
    );
    let region = cfg
        .consultant_region(&t.consultant)
        .unwrap_or_else(|| panic!("{} is not a consultant", t.consultant));
    assert_eq!(region.name, t.region);
    assert!(
        t.invitees.len() <= cfg.sending.max_invitees_per_message,
        "{} invitees over a cap of {}",
        t.invitees.len(),
        cfg.sending.max_invitees_per_message
    );
    let mut seen = HashSet::new();
    for a in &t.invitees {
        assert!(seen.insert(a.clone()), "{a} invited twice");
        assert_ne!(*a, cfg.survey_address, "the survey address invited");
        assert_ne!(*a, t.consultant, "the sender invited");
        assert!(!cfg.is_consultant(a), "consultant {a} invited");
        assert!(!cfg.is_internal(a), "colleague {a} invited");
        assert_eq!(
            address::parse(a.as_str()).as_ref(),
            Ok(a),
            "invitee {a} is not a normalised address"
        );
        assert!(
            !t.skipped.iter().any(|s| s.address == a.as_str()),
            "{a} both invited and skipped"
        );
    }
}

/// Without the source text, an unproven opt-out cannot be told apart.
fn decision_asks_opt_out(source: Option<&str>) -> bool {
    source.is_none_or(|s| {
        [
            "afmeld",
            "frameld",
            "unsubscribe",
            "opt",
            "stop",
            "fjern",
            "slet",
            "remove",
            "ønsker",
            "vil",
            "wish",
            "want",
            "delete",
        ]
        .iter()
        .any(|w| s.contains(w))
    })
}

fn check_bounce(b: &BounceReport, cfg: &Config) {
    check_message_ids(&b.message_ids, cfg);
    assert!(!b.format.is_empty());
    assert_eq!(
        b.proof == Some(canvass::classify::Proof::MessageId),
        !b.message_ids.is_empty(),
        "a bounce's Message-ID proof"
    );
    for r in &b.recipients {
        // Only a report that names nobody, matched by its Message-ID, has
        // a recipient without an address.
        assert!(
            !r.address.is_empty() || (b.recipients.len() == 1 && !b.message_ids.is_empty()),
            "a bounced recipient without an address"
        );
        assert!(!(r.expired && r.permanent), "expired and permanent");
        let Some(status) = &r.status else { continue };
        let class = status.as_bytes()[0];
        assert!(
            matches!(class, b'4' | b'5'),
            "{}: status {status} is no failure",
            r.address
        );
        assert_eq!(
            r.permanent,
            class == b'5',
            "{}: permanent = {} with status {status}",
            r.address,
            r.permanent
        );
        let parts: Vec<&str> = status.split('.').collect();
        assert!(
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit())),
            "{status} is not an enhanced status code"
        );
    }
}

fn check_message_ids(ids: &[String], cfg: &Config) {
    let mut seen = HashSet::new();
    for id in ids {
        assert!(seen.insert(id), "{id} reported twice");
        let hex = id
            .strip_prefix("canvass.")
            .and_then(|r| r.strip_suffix(&format!("@{}", cfg.survey_address.domain())))
            .unwrap_or_else(|| panic!("{id} is not a canvass Message-ID"));
        assert!(
            !hex.is_empty()
                && hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{id} is not a canvass Message-ID"
        );
    }
}

/// Mostly inside the window; sometimes up to two weeks before or after it.
fn window_time() -> impl Strategy<Value = DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2024, 7, 24, 0, 0, 0).unwrap();
    prop_oneof![
        6 => 14 * 24 * 3600i64..59 * 24 * 3600,
        1 => 0i64..73 * 24 * 3600,
    ]
    .prop_map(move |s| start + Duration::seconds(s))
}

/// Which of [`configs`]: mostly one without an authserv-id.
fn which_config() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0usize), 3 => Just(1usize), 1 => Just(2usize)]
}

// ---------------------------------------------------------------------------
// Random mail-shaped messages.
// ---------------------------------------------------------------------------

/// Randomly upper-cases ASCII letters (addresses are case-insensitive).
fn recase(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

fn address_text() -> BoxedStrategy<String> {
    let consultants = consultants();
    let fixed = prop_oneof![
        proptest::sample::select(consultants),
        Just("undersoegelse@siri.dk".to_string()),
        Just("juridisk@siri.dk".to_string()),
        Just("mette.larsen@aarhus.dk".to_string()),
        Just("jens.petersen@roskilde.dk".to_string()),
        Just("søren.ærø@kommune.dk".to_string()),
    ];
    let generated = "[a-zA-Z0-9æøåÆØÅ._%+'-]{1,12}@[a-z0-9æøå][a-z0-9æøå-]{0,8}[a-z0-9]\\.(dk|com|de|siri\\.dk)";
    let odd = prop_oneof![
        Just("\"a@b\"@c.dk".to_string()),
        Just("\"jens hansen\"@horsens.dk".to_string()),
        Just("a@b@c.dk".to_string()),
        Just("@kommune.dk".to_string()),
        Just("ingen-snabel-a".to_string()),
        Just("x@localhost".to_string()),
        Just("x@-bad-.dk".to_string()),
        "[ -~]{0,24}",
        "\\PC{0,16}",
    ];
    (
        prop_oneof![4 => fixed, 4 => generated.prop_map(|s| s), 2 => odd],
        any::<u64>(),
    )
        .prop_map(|(a, mask)| recase(&a, mask))
        .boxed()
}

fn display_name() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        3 => Just(None),
        2 => "[A-Za-z ]{1,20}".prop_map(Some),
        1 => "\\PC{0,16}".prop_map(|s| Some(format!("\"{}\"", s.replace(['"', '\\'], "")))),
        1 => "\\PC{1,16}".prop_map(|s| {
            use std::fmt::Write;
            let mut q = String::new();
            for b in s.as_bytes() {
                let _ = write!(q, "={b:02X}");
            }
            Some(format!("=?utf-8?q?{q}?="))
        }),
        1 => Just(Some("=?iso-8859-1?b?5k9y?=".to_string())),
        1 => Just(Some("=?x-unknown?q?=E6=F8?=".to_string())),
    ]
    .boxed()
}

fn mailbox() -> BoxedStrategy<String> {
    (display_name(), address_text(), 0u8..4)
        .prop_map(|(name, addr, form)| match (name, form) {
            (Some(n), _) => format!("{n} <{addr}>"),
            (None, 0) => format!("<{addr}>"),
            (None, 1) => format!("{addr} (kommentar)"),
            (None, _) => addr,
        })
        .boxed()
}

fn address_list() -> BoxedStrategy<String> {
    (
        proptest::collection::vec(mailbox(), 0..10),
        0u8..4,
        "[A-Za-z ]{1,12}",
    )
        .prop_map(|(boxes, shape, group)| match shape {
            0 => format!("{group}: {};", boxes.join(", ")),
            1 => format!("undisclosed-recipients:;, {}", boxes.join(",\r\n ")),
            _ => boxes.join(", "),
        })
        .boxed()
}

fn extra_header() -> BoxedStrategy<(String, String)> {
    let name = prop_oneof![
        1 => Just("Auto-Submitted".to_string()),
        1 => Just("Precedence".to_string()),
        1 => Just("List-Id".to_string()),
        1 => Just("Return-Path".to_string()),
        1 => Just("X-Auto-Response-Suppress".to_string()),
        1 => Just("Authentication-Results".to_string()),
        1 => Just("Received".to_string()),
        1 => Just("Message-ID".to_string()),
        1 => Just("Content-Type".to_string()),
        1 => Just("Subject".to_string()),
        1 => Just("Reply-To".to_string()),
        1 => Just("In-Reply-To".to_string()),
        1 => Just("References".to_string()),
        1 => Just("X-Failed-Recipients".to_string()),
        12 => "[A-Za-z][A-Za-z0-9-]{0,20}",
    ];
    let value = prop_oneof![
        Just("no".to_string()),
        Just("auto-replied".to_string()),
        Just("bulk".to_string()),
        Just("<>".to_string()),
        Just("All".to_string()),
        Just("mx.siri.dk; dkim=pass (2048-bit key; secure) header.d=siri.dk".to_string()),
        Just("mx.siri.dk; dkim=fail header.d=siri.dk; dmarc=pass header.from=siri.dk".to_string()),
        Just("<canvass.0a1b2c@siri.dk>".to_string()),
        Just("<a@b.dk>\r\n <canvass.ff@siri.dk> <canvass.0a1b2c@SIRI.DK>".to_string()),
        Just("<canvass.zz@siri.dk> <canvass.0a1b2c@siri.dk.example>".to_string()),
        Just("multipart/report; report-type=delivery-status; boundary=x".to_string()),
        Just("multipart/report; report-type=disposition-notification; boundary=x".to_string()),
        Just("afmeld".to_string()),
        Just("SV: Afmeld mig".to_string()),
        Just("mette.larsen@aarhus.dk, x@y".to_string()),
        Just("Automatisk svar: ferie".to_string()),
        "[ -~]{0,40}",
        "\\PC{0,30}",
    ];
    (name, value).boxed()
}

/// Lines of the bounce shapes, of opt-outs and of quoted invitations.
fn report_line() -> BoxedStrategy<String> {
    prop_oneof![
        address_text().prop_map(|a| format!("Final-Recipient: rfc822; {a}")),
        address_text().prop_map(|a| format!("Original-Recipient: rfc822;{a}")),
        proptest::sample::select(vec!["failed", "delayed", "delivered", "relayed", "", "x"])
            .prop_map(|a| format!("Action: {a}")),
        "[245]\\.[0-9]{1,4}\\.[0-9]{1,4}( \\(x\\))?".prop_map(|c| format!("Status: {c}")),
        "[0-9]{3}[ -][245]\\.[0-9]\\.[0-9]{1,2} [a-z ]{0,12}"
            .prop_map(|c| format!("Diagnostic-Code: smtp; {c}")),
        Just("Reporting-MTA: dns; mx.siri.dk".to_string()),
        Just(String::new()),
        Just("Hi. This is the qmail-send program at mail.x.dk.".to_string()),
        Just("This is a permanent error; I've given up.".to_string()),
        address_text().prop_map(|a| format!("<{a}>:")),
        Just("Sorry, no mailbox here by that name. (#5.1.1)".to_string()),
        Just("--- Below this line is a copy of the message.".to_string()),
        Just("Delivery has failed to these recipients or groups:".to_string()),
        Just("Diagnostic information for administrators:".to_string()),
        Just(
            "Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'".to_string()
        ),
        address_text().prop_map(|a| format!("Your message wasn't delivered to {a} because")),
        Just("The response from the remote server was:".to_string()),
        "[0-9]{3}[ -]?[0-9.]{0,8} [a-z]{0,8}",
        Just("afmeld".to_string()),
        Just("Afmeld mig, tak.".to_string()),
        Just("Kan I afmelde mig?".to_string()),
        Just("Please unsubscribe me".to_string()),
        Just("STOP".to_string()),
        Just("Hej".to_string()),
        Just("Mvh".to_string()),
        Just(
            "> Ønsker du ikke at deltage, kan du svare på denne mail med ordet \"afmeld\"."
                .to_string()
        ),
        Just("Message-ID: <canvass.0a1b2c@siri.dk>".to_string()),
    ]
    .boxed()
}

fn body_line() -> BoxedStrategy<String> {
    prop_oneof![
        3 => report_line(),
        3 => address_text(),
        2 => mailbox(),
        2 => "\\PC{0,60}",
        1 => (address_text(), address_text()).prop_map(|(a, b)| format!("{a}, {b}; {a}")),
        1 => address_text().prop_map(|a| format!("{a}<mailto:{a}>")),
        1 => address_text().prop_map(|a| format!("> {a}")),
        1 => Just("-- ".to_string()),
        1 => Just("________________________________".to_string()),
        1 => mailbox().prop_map(|m| format!("Fra: {m}")),
        1 => mailbox().prop_map(|m| format!("Den 12.08.2024 kl. 11.30 skrev {m}:")),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Spec {
    from: Option<String>,
    to: Option<String>,
    cc: Option<String>,
    extra: Vec<(String, String)>,
    body: Vec<String>,
    encoding: u8,
}

fn spec() -> BoxedStrategy<Spec> {
    let from = prop_oneof![
        10 => (display_name(), proptest::sample::select(consultants()), any::<u64>())
            .prop_map(|(n, a, m)| Some(match n {
                Some(n) => format!("{n} <{}>", recase(&a, m)),
                None => recase(&a, m),
            })),
        2 => mailbox().prop_map(Some),
        1 => Just(None),
        1 => (mailbox(), mailbox()).prop_map(|(a, b)| Some(format!("{a}, {b}"))),
    ];
    (
        from,
        proptest::option::weighted(0.8, address_list()),
        proptest::option::weighted(0.7, address_list()),
        proptest::collection::vec(extra_header(), 0..4),
        proptest::collection::vec(body_line(), 0..12),
        0u8..4,
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(from, to, cc, extra, body, encoding, phone)| Spec {
            from,
            // A phone contact: to the survey address alone.
            to: if phone {
                Some("Undersøgelse <undersoegelse@siri.dk>".to_string())
            } else {
                to
            },
            cc: if phone { None } else { cc },
            extra,
            body,
            encoding,
        })
        .boxed()
}

/// The raw message, and its text before transfer encoding (lower-cased) for
/// the "only named people are invited" check.
fn render(spec: &Spec) -> (Vec<u8>, String) {
    let mut head = String::new();
    for (name, value) in &spec.extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(f) = &spec.from {
        head.push_str(&format!("From: {f}\r\n"));
    }
    if let Some(t) = &spec.to {
        head.push_str(&format!("To: {t}\r\n"));
    }
    if let Some(c) = &spec.cc {
        head.push_str(&format!("Cc: {c}\r\n"));
    }
    head.push_str(
        "Subject: Opfølgning\r\nDate: Mon, 12 Aug 2024 11:59:30 +0200\r\nMIME-Version: 1.0\r\n",
    );
    let body = spec.body.join("\r\n") + "\r\n";
    let source = format!("{head}\r\n{body}").to_lowercase();
    use base64::Engine;
    let encoded = match spec.encoding {
        0 => format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"),
        1 => {
            let b = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
            format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{b}\r\n")
        }
        2 => format!(
            "Content-Type: multipart/alternative; boundary=\"b-1\"\r\n\r\n--b-1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--b-1\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<p>hej</p>\r\n--b-1--\r\n"
        ),
        _ => format!("\r\n{body}"),
    };
    (format!("{head}{encoded}").into_bytes(), source)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..2048),
        received in window_time(),
        which in which_config(),
    ) {
        let cfg = &configs()[which];
        let d = classify_raw(&raw, received, cfg);
        check(&d, cfg, received, None);
    }

    #[test]
    fn header_shaped_bytes_never_panic(
        prefix in "(From|To|Cc|Content-Type|Auto-Submitted): ",
        junk in proptest::collection::vec(any::<u8>(), 0..512),
        received in window_time(),
    ) {
        let cfg = &configs()[0];
        let mut raw = b"From: anne.hansen@siri.dk\r\nCc: undersoegelse@siri.dk\r\n".to_vec();
        raw.extend_from_slice(prefix.as_bytes());
        raw.extend_from_slice(&junk);
        let d = classify_raw(&raw, received, cfg);
        check(&d, cfg, received, None);
    }

    #[test]
    fn mail_shaped_messages_keep_the_rules(
        spec in spec(),
        received in window_time(),
        which in which_config(),
    ) {
        let cfg = &configs()[which];
        let (raw, source) = render(&spec);
        let d = classify_raw(&raw, received, cfg);
        check(&d, cfg, received, Some(&source));
        prop_assert_eq!(&d, &classify_raw(&raw, received, cfg), "classify is not deterministic");
    }

    #[test]
    fn answers_to_invitations_keep_the_rules(
        from in prop_oneof![
            3 => address_text(),
            1 => proptest::sample::select(consultants()),
        ],
        refs in proptest::option::weighted(0.7, proptest::sample::select(vec![
            "In-Reply-To: <canvass.0a1b2c3d4e5f60718293a4b5@siri.dk>",
            "References: <x@aarhus.dk>\r\n <canvass.ff00@siri.dk>",
            "In-Reply-To: <canvass.0a1b@siri.dk.example>",
            "References: <AM9PR07MB7123@outlook.com>",
        ])),
        subject in proptest::sample::select(vec![
            "afmeld", "AFMELD", "SV: Hvad synes du om SIRIs sikkerhedskonsulentordning?",
            "Re: stop", "Automatisk svar: Hvad synes du?", "unsubscribe", "Spørgsmål",
        ]),
        to in proptest::sample::select(vec![
            "undersoegelse@siri.dk",
            "undersoegelse@siri.dk, anne.hansen@siri.dk",
            "mette.larsen@aarhus.dk",
        ]),
        auto in proptest::option::weighted(0.2, proptest::sample::select(vec![
            "Auto-Submitted: auto-generated", "Auto-Submitted: auto-replied", "X-Autoreply: yes",
            "Return-Path: <>", "Precedence: bulk",
        ])),
        body in proptest::collection::vec(body_line(), 0..8),
        received in window_time(),
    ) {
        let cfg = &configs()[0];
        let mut raw = format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n");
        for h in refs.iter().chain(auto.iter()) {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        raw.push_str(&body.join("\r\n"));
        let d = classify_raw(raw.as_bytes(), received, cfg);
        check(&d, cfg, received, Some(&raw.to_lowercase()));
        if matches!(d, Decision::OptOut { .. } | Decision::Reply { .. }) {
            prop_assert!(auto.is_none() || auto == Some("Auto-Submitted: auto-generated"),
                "an automatic message made a {}", d.label());
        }
    }

    #[test]
    fn body_addresses_are_valid_and_unique(body in proptest::collection::vec(body_line(), 0..20)) {
        let body = body.join("\n");
        let (found, invalid) = addresses_in_body(&body);
        let mut seen = HashSet::new();
        for a in &found {
            prop_assert!(seen.insert(a.clone()), "{} found twice", a);
            let reparsed = address::parse(a.as_str());
            prop_assert_eq!(reparsed.as_ref(), Ok(a));
            prop_assert!(spelled_in(&body.to_lowercase(), a.as_str()), "{} not in the body", a);
        }
        for l in &invalid {
            prop_assert!(!l.error.is_empty());
        }
    }
}

/// Whether `text` names the address: as stored, or with its IDN domain in
/// Unicode (canvass keys `bølle.dk` by its ASCII form `xn--blle-gra.dk`).
fn spelled_in(text: &str, a: &str) -> bool {
    if text.contains(a) {
        return true;
    }
    let (local, domain) = a.rsplit_once('@').unwrap_or((a, ""));
    let (unicode, _) = idna::domain_to_unicode(domain);
    text.contains(&format!("{local}@{unicode}"))
}
