//! Every error key the validator can produce, section by section: each test
//! breaks one valid config (the classify fixtures') and asserts the dotted key
//! and the words that tell the operator what to fix.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::*;

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify/config.toml")
}

fn fixture() -> Table {
    let text = std::fs::read_to_string(fixture_path()).expect("the classify fixture config");
    text.parse().expect("the classify fixture config is TOML")
}

/// Sets `dotted` (tables created on the way) in `t`.
fn set(t: &mut Table, dotted: &str, v: impl Into<Value>) {
    let mut keys: Vec<&str> = dotted.split('.').collect();
    let last = keys.pop().expect("a key");
    let mut t = t;
    for k in keys {
        t = t
            .entry(k)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("a table on the way");
    }
    t.insert(last.to_string(), v.into());
}

fn remove(t: &mut Table, dotted: &str) {
    let (path, last) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut t = t;
    for k in path.split('.').filter(|k| !k.is_empty()) {
        t = t.get_mut(k).and_then(Value::as_table_mut).expect("a table");
    }
    t.remove(last);
}

fn table(pairs: &[(&str, Value)]) -> Value {
    Value::Table(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn list(vs: &[&str]) -> Value {
    Value::Array(vs.iter().map(|v| s(v)).collect())
}

fn parse(t: &Table) -> Result<Config, ConfigErrors> {
    let text = toml::to_string(t).expect("a table serialises");
    Config::parse(&text, &fixture_path())
}

/// The errors of the fixture changed by `edit`.
fn errors(edit: impl FnOnce(&mut Table)) -> Vec<ConfigError> {
    let mut t = fixture();
    edit(&mut t);
    match parse(&t) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors,
    }
}

/// Asserts that `errors` holds `key` with a message containing `wording`.
#[track_caller]
fn has(errors: &[ConfigError], key: &str, wording: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.key == key && e.message.contains(wording)),
        "no error {key}: …{wording}… in {errors:#?}"
    );
}

/// An IMAP inbound and SMTP outbound in place of the fixture's Maildir and files.
fn imap_and_smtp(t: &mut Table) {
    remove(t, "inbound.maildir");
    remove(t, "outbound.file");
    set(
        t,
        "inbound.imap",
        table(&[
            ("host", s("imap.siri.dk")),
            ("username", s("undersoegelse")),
            ("password_file", s("imap.pw")),
        ]),
    );
    set(t, "outbound.smtp", table(&[("host", s("smtp.siri.dk"))]));
}

/// `auth.method = "oauth2"` with a client secret (generic provider).
fn oauth2_client_secret(t: &mut Table, secret_file: &str) {
    set(t, "auth.method", "oauth2");
    set(t, "auth.token_url", "https://idp.example/token");
    set(t, "auth.client_id", "app");
    set(t, "auth.client_secret_file", secret_file);
}

#[test]
fn the_fixture_is_valid() {
    let cfg = parse(&fixture()).expect("valid");
    assert_eq!(cfg.regions.len(), 5);
}

#[test]
fn file_and_syntax_errors_name_the_file_or_line() {
    let e = Config::load(Path::new("/nonexistent/canvass.toml")).unwrap_err();
    has(&e.errors, "(file)", "cannot read the config file");

    let e = Config::parse("[survey]\naddress = ", &fixture_path()).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].key, "line 2");

    let e = errors(|t| set(t, "surveyy.address", "x@siri.dk"));
    assert!(
        e.len() == 1
            && e[0].key.starts_with("line ")
            && e[0].message.contains("unknown field `surveyy`"),
        "{e:#?}"
    );
}

#[test]
fn survey_section() {
    let e = errors(|t| {
        set(t, "survey.address", "not an address");
        set(t, "survey.reply_to", "nobody@");
        set(t, "survey.base_url", "undersoegelse.siri.dk");
        set(t, "survey.definition", "/nonexistent/survey.toml");
        set(t, "survey.definition_en", "/nonexistent/survey.en.toml");
        set(t, "survey.templates_dir", "/nonexistent/templates");
    });
    has(
        &e,
        "survey.address",
        "\"not an address\" is not a valid address",
    );
    has(&e, "survey.reply_to", "\"nobody@\" is not a valid address");
    has(&e, "survey.base_url", "must start with https://");
    has(&e, "survey.definition", "cannot read the survey file");
    has(&e, "survey.definition_en", "cannot read the survey file");
    has(
        &e,
        "survey.templates_dir",
        "cannot read the templates directory",
    );

    let e = errors(|t| {
        set(t, "survey.address", "anne.hansen@siri.dk");
    });
    has(&e, "survey.address", "is also listed as a consultant");
}

#[test]
fn an_english_questionnaire_must_have_the_danish_codes() {
    let dir = tempfile::tempdir().unwrap();
    let en = dir.path().join("survey.en.toml");
    let da = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml");
    let text = std::fs::read_to_string(da).unwrap();
    // Drop the last question: the codes no longer match.
    let cut = text.rfind("[[questions]]").expect("questions");
    std::fs::write(&en, &text[..cut]).unwrap();
    let e = errors(|t| set(t, "survey.definition_en", en.to_str().unwrap()));
    let err = e.iter().find(|e| e.key == "survey.definition_en");
    assert!(err.is_some(), "{e:#?}");
    assert!(
        err.unwrap().message.contains(en.to_str().unwrap()),
        "{e:#?}"
    );
}

#[test]
fn window_section() {
    let date = |s: &str| Value::Datetime(s.parse().unwrap());
    let e = errors(|t| {
        set(t, "window.start", date("2024-09-21"));
        set(t, "window.answers_until", date("2024-09-01"));
    });
    has(
        &e,
        "window.end",
        "2024-09-20 is before window.start 2024-09-21",
    );
    has(
        &e,
        "window.answers_until",
        "is before window.end 2024-09-20: invitations sent on the last day could not be answered",
    );

    let e = errors(|t| set(t, "window.start", date("2024-08-07T08:00:00")));
    has(&e, "window.start", "must be a plain date like 2024-08-07");
    // "not a calendar date" (2024-02-30) is refused by toml before the
    // validator sees it: validate::tests::a_date_that_is_no_calendar_day.
}

#[test]
fn sending_section() {
    let e = errors(|t| {
        set(t, "sending.hours.start", "8");
        set(t, "sending.hours.end", "25:00");
        set(t, "sending.hours.days", list(&["mon", "someday"]));
        set(t, "sending.max_invitees_per_message", 0);
        set(t, "sending.max_invitees_per_consultant_per_day", 0);
        set(t, "sending.max_retry_minutes", 0);
    });
    has(
        &e,
        "sending.hours.start",
        "\"8\" is not a time like \"08:00\"",
    );
    has(&e, "sending.hours.end", "\"25:00\" is not a time");
    has(&e, "sending.hours.days[1]", "\"someday\" is not a weekday");
    has(&e, "sending.max_invitees_per_message", "must be at least 1");
    has(
        &e,
        "sending.max_invitees_per_consultant_per_day",
        "must be at least 1 (0 would refuse every trigger)",
    );
    has(&e, "sending.max_retry_minutes", "must be at least 1");

    let e = errors(|t| {
        set(t, "sending.hours.start", "16:00");
        set(t, "sending.hours.end", "08:00");
        set(t, "sending.hours.days", list(&[]));
    });
    has(
        &e,
        "sending.hours.end",
        "must be later than sending.hours.start",
    );
    has(
        &e,
        "sending.hours.days",
        "names no day: nothing would ever be sent",
    );
}

#[test]
fn trust_section() {
    let e = errors(|t| {
        set(t, "trust.internal_domains", list(&["siri.dk", "intranet"]));
        set(t, "trust.authserv_id", " ");
    });
    has(
        &e,
        "trust.internal_domains[1]",
        "\"intranet\" is not a domain",
    );
    has(
        &e,
        "trust.authserv_id",
        "is empty; remove the key to disable the check",
    );
    // A report naming the outbound server is believed only when the trust
    // setting authenticates it: without one the key would do nothing.
    let mta = |t: &mut Table| set(t, "trust.outbound_reporting_mta", list(&["smtp.siri.dk"]));
    has(
        &errors(mta),
        "trust.outbound_reporting_mta",
        "needs trust.authserv_id (or mailbox.provider)",
    );
    assert!(errors(|t| {
        mta(t);
        set(t, "trust.authserv_id", "mx.siri.dk");
    })
    .is_empty());
    // Likewise a complaint naming only the invitee (anybody can write one):
    // believed only from a configured sender the trust setting vouches for.
    let fbl = |t: &mut Table| {
        set(
            t,
            "trust.complaint_senders",
            list(&["FBL@Provider.example", "arf.mail.yahoo.com"]),
        )
    };
    has(
        &errors(fbl),
        "trust.complaint_senders",
        "needs trust.authserv_id (or mailbox.provider)",
    );
    assert!(errors(|t| {
        fbl(t);
        set(t, "trust.authserv_id", "mx.siri.dk");
    })
    .is_empty());
    let mut t = fixture();
    fbl(&mut t);
    set(&mut t, "trust.authserv_id", "mx.siri.dk");
    let cfg = parse(&t).expect("a valid config");
    assert_eq!(
        cfg.trust.complaint_senders,
        ["fbl@provider.example", "arf.mail.yahoo.com"]
    );
    let e = errors(|t| {
        set(t, "trust.authserv_id", "mx.siri.dk");
        set(t, "trust.complaint_senders", list(&["intranet", "@x.dk"]));
    });
    has(
        &e,
        "trust.complaint_senders[0]",
        "\"intranet\" is neither an address nor a domain",
    );
    has(
        &e,
        "trust.complaint_senders[1]",
        "\"@x.dk\" is neither an address nor a domain",
    );
}

#[test]
fn mailbox_and_auth_sections() {
    // Every OAuth 2.0 key is refused with password login, each by its name.
    let oauth_only = [
        ("auth.mechanism", "xoauth2"),
        ("auth.login", "undersoegelse@siri.dk"),
        ("auth.client_id", "app"),
        ("auth.client_secret_file", "secret"),
        ("auth.certificate_file", "cert.pem"),
        ("auth.private_key_file", "key.pem"),
        ("auth.service_account_file", "sa.json"),
        ("auth.token_url", "https://idp.example/token"),
        ("auth.scope", "https://outlook.office365.com/.default"),
    ];
    let e = errors(|t| {
        set(t, "mailbox.tenant_id", "contoso.onmicrosoft.com");
        for (key, value) in oauth_only {
            set(t, key, value);
        }
    });
    has(
        &e,
        "mailbox.tenant_id",
        "is only used with provider = \"microsoft365\"",
    );
    for (key, _) in oauth_only {
        has(&e, key, "is only used with auth.method = \"oauth2\"");
    }

    let oauth2 = |t: &mut Table| {
        imap_and_smtp(t);
        remove(t, "inbound.imap.password_file");
        set(t, "auth.method", "oauth2");
    };
    let e = errors(|t| {
        oauth2(t);
        set(t, "mailbox.provider", "microsoft365");
        set(t, "auth.login", "a,b");
        set(t, "auth.client_secret_file", "secret");
    });
    has(&e, "auth.login", "\"a,b\" cannot be a login name");
    has(
        &e,
        "mailbox.tenant_id",
        "is required for microsoft365 with OAuth 2.0",
    );
    has(
        &e,
        "auth.client_id",
        "is required: the application (client) id",
    );

    let e = errors(|t| {
        oauth2(t);
        set(t, "auth.certificate_file", "cert.pem");
    });
    has(
        &e,
        "auth.token_url",
        "is required with provider = \"generic\"",
    );
    has(
        &e,
        "auth.private_key_file",
        "certificate_file and private_key_file go together",
    );

    let e = errors(|t| {
        oauth2(t);
        set(t, "auth.token_url", "http://idp.example/token");
    });
    has(
        &e,
        "auth.token_url",
        "must start with https:// (http:// only to a loopback host)",
    );
    has(&e, "auth", "set exactly one credential");
    assert!(
        errors(|t| {
            oauth2(t);
            set(t, "auth.token_url", "http://127.0.0.1:8080/token");
            set(t, "auth.client_id", "app");
            set(t, "auth.client_secret_file", "secret");
        })
        .is_empty(),
        "http:// to a loopback token endpoint is allowed"
    );

    let e = errors(|t| {
        oauth2(t);
        set(t, "mailbox.provider", "google");
        set(t, "auth.client_id", "app");
        set(t, "auth.client_secret_file", "secret");
    });
    has(
        &e,
        "auth.service_account_file",
        "Google Workspace needs a service-account key file",
    );
}

#[test]
fn inbound_section() {
    let e = errors(|t| {
        imap_and_smtp(t);
        remove(t, "inbound.imap.host");
        remove(t, "inbound.imap.username");
        remove(t, "inbound.imap.password_file");
        set(t, "inbound.imap.port", 0);
    });
    has(
        &e,
        "inbound.imap.host",
        "is required (or set mailbox.provider",
    );
    has(&e, "inbound.imap.port", "port 0 is not a port");
    has(
        &e,
        "inbound.imap.username",
        "is required with auth.method = \"password\"",
    );
    has(
        &e,
        "inbound.imap.password_file",
        "is required with auth.method = \"password\"",
    );

    let e = errors(|t| {
        imap_and_smtp(t);
        set(t, "inbound.imap.username", "");
        set(t, "inbound.imap.tls", "none");
    });
    has(&e, "inbound.imap.username", "is empty");
    has(
        &e,
        "inbound.imap.tls",
        "tls = \"none\" is only allowed to a loopback host",
    );

    let e = errors(|t| {
        imap_and_smtp(t);
        oauth2_client_secret(t, "secret");
    });
    has(
        &e,
        "inbound.imap.password_file",
        "is not used with auth.method = \"oauth2\": remove it",
    );
}

#[test]
fn outbound_section() {
    let e = errors(|t| {
        imap_and_smtp(t);
        remove(t, "outbound.smtp.host");
        set(t, "outbound.smtp.port", 0);
        set(t, "outbound.smtp.username", "undersoegelse");
        set(t, "outbound.smtp.pool_size", 0);
    });
    has(
        &e,
        "outbound.smtp.host",
        "is required (or set mailbox.provider",
    );
    has(&e, "outbound.smtp.port", "port 0 is not a port");
    has(
        &e,
        "outbound.smtp.password_file",
        "username and password_file go together",
    );
    has(&e, "outbound.smtp.pool_size", "must be at least 1");

    let e = errors(|t| {
        imap_and_smtp(t);
        set(t, "outbound.smtp.tls", "none");
        set(t, "mailbox.provider", "microsoft365");
        set(t, "outbound.smtp.pool_size", 4);
    });
    has(
        &e,
        "outbound.smtp.tls",
        "tls = \"none\" is only allowed to a loopback host",
    );
    has(
        &e,
        "outbound.smtp.pool_size",
        "4 is above the 3 simultaneous SMTP connections",
    );

    let e = errors(|t| {
        imap_and_smtp(t);
        remove(t, "inbound.imap.password_file");
        set(t, "outbound.smtp.password_file", "smtp.pw");
        oauth2_client_secret(t, "secret");
    });
    has(
        &e,
        "outbound.smtp.password_file",
        "is not used with auth.method = \"oauth2\": remove it",
    );
}

#[test]
fn web_section() {
    let e = errors(|t| {
        set(t, "web.bind", "localhost");
        set(t, "web.metrics_bind", "unix:relative.sock");
        set(t, "web.trusted_proxies", list(&["10.0.0.0/8", "proxy"]));
        set(t, "web.header_timeout_seconds", 0);
        set(t, "web.body_timeout_seconds", 0);
        set(t, "web.max_connections", 0);
        set(t, "web.accessibility_statement_url", "was.digst.dk");
        set(t, "web.contact", "kontakt");
    });
    has(
        &e,
        "web.bind",
        "\"localhost\" is not an address:port like 127.0.0.1:8080",
    );
    has(
        &e,
        "web.metrics_bind",
        "a Unix socket like unix:/run/canvass/metrics.sock, or \"off\"",
    );
    has(
        &e,
        "web.trusted_proxies",
        "\"proxy\" is not an IP address or network",
    );
    has(&e, "web.header_timeout_seconds", "must be at least 1");
    has(&e, "web.body_timeout_seconds", "must be at least 1");
    has(&e, "web.max_connections", "must be at least 1");
    has(
        &e,
        "web.accessibility_statement_url",
        "\"was.digst.dk\" is not a web address",
    );
    has(&e, "web.contact", "\"kontakt\" is not a valid address");

    let e = errors(|t| remove(t, "web.accessibility_statement_url"));
    has(
        &e,
        "web.accessibility_statement_url",
        "is missing: a public site of a Danish authority must link to its accessibility statement",
    );
    // The demo (a loopback base_url) needs neither.
    assert!(errors(|t| {
        remove(t, "web.accessibility_statement_url");
        remove(t, "privacy");
        set(t, "survey.base_url", "http://127.0.0.1:8080");
    })
    .is_empty());
}

#[test]
fn privacy_section() {
    let e = errors(|t| {
        set(t, "privacy.controller", " ");
        set(t, "privacy.dpo", "");
        set(t, "privacy.purpose", "");
        set(t, "privacy.legal_basis", "");
        set(t, "privacy.contact", "dpo");
    });
    for key in [
        "privacy.controller",
        "privacy.dpo",
        "privacy.purpose",
        "privacy.legal_basis",
    ] {
        has(
            &e,
            key,
            "is empty: the invitation must say it (GDPR art. 14)",
        );
    }
    has(&e, "privacy.contact", "\"dpo\" is not a valid address");

    let e = errors(|t| remove(t, "privacy"));
    has(
        &e,
        "privacy",
        "the [privacy] section is missing: with a public base_url",
    );
}

#[test]
fn digest_reminders_retention_and_replies_sections() {
    let e = errors(|t| {
        set(t, "digest.schedule", "every monday");
        set(t, "digest.managers", list(&["leder@siri.dk", "leder"]));
        set(t, "reminders.after_days", 7);
        set(t, "reminders.max", 0);
        set(t, "retention.erase_addresses_after_days", 3651);
        set(t, "replies.forward_to", "svar");
    });
    has(&e, "digest.schedule", "is not a cron expression");
    has(&e, "digest.managers[1]", "\"leder\" is not a valid address");
    has(
        &e,
        "reminders.max",
        "is 0 while reminders.after_days is set",
    );
    has(
        &e,
        "retention.erase_addresses_after_days",
        "3651 days is more than 3650",
    );
    has(&e, "replies.forward_to", "\"svar\" is not a valid address");
}

#[test]
fn regions_section() {
    let e = errors(|t| set(t, "regions", Value::Array(Vec::new())));
    has(
        &e,
        "regions",
        "no [[regions]] configured: nobody could trigger an invitation",
    );

    let e = errors(|t| {
        set(
            t,
            "regions",
            Value::Array(vec![
                table(&[("name", s(" ")), ("consultants", list(&["a@siri.dk"]))]),
                table(&[("name", s("Fyn")), ("consultants", list(&["b@siri.dk"]))]),
                table(&[
                    ("name", s("Fyn")),
                    ("consultants", list(&["A@siri.dk", "c"])),
                    ("managers", list(&["leder"])),
                ]),
            ]),
        )
    });
    has(&e, "regions[0].name", "is empty");
    has(&e, "regions[2].name", "region \"Fyn\" is configured twice");
    has(
        &e,
        "regions[2].consultants[0]",
        "a@siri.dk is already a consultant of region \"\"; a consultant belongs to one region",
    );
    has(
        &e,
        "regions[2].consultants[1]",
        "\"c\" is not a valid address",
    );
    has(
        &e,
        "regions[2].managers[0]",
        "\"leder\" is not a valid address",
    );
}

#[test]
fn check_files_names_each_unreadable_secret() {
    let mut t = fixture();
    imap_and_smtp(&mut t);
    set(&mut t, "inbound.imap.ca_file", "/nonexistent/ca.pem");
    set(&mut t, "outbound.smtp.username", "u");
    set(
        &mut t,
        "outbound.smtp.password_file",
        "/nonexistent/smtp.pw",
    );
    set(&mut t, "outbound.smtp.ca_file", "/nonexistent/ca.pem");
    let cfg = parse(&t).expect("valid");
    let e = cfg.check_files();
    has(
        &e,
        "secrets.hmac_key_file",
        "cannot read the HMAC key file /nonexistent/canvass-hmac.key",
    );
    has(&e, "inbound.imap.password_file", "cannot read");
    has(
        &e,
        "inbound.imap.ca_file",
        "cannot read /nonexistent/ca.pem",
    );
    has(
        &e,
        "outbound.smtp.password_file",
        "cannot read /nonexistent/smtp.pw",
    );
    has(
        &e,
        "outbound.smtp.ca_file",
        "cannot read /nonexistent/ca.pem",
    );

    let mut t = fixture();
    imap_and_smtp(&mut t);
    remove(&mut t, "inbound.imap.password_file");
    oauth2_client_secret(&mut t, "/nonexistent/secret");
    let e = parse(&t).expect("valid").check_files();
    has(
        &e,
        "auth.client_secret_file",
        "cannot read /nonexistent/secret",
    );
    assert!(!e.iter().any(|e| e.key == "inbound.imap.password_file"));
}

#[test]
fn secrets_are_found_beside_the_config_and_read_without_the_newline() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        secret_path(Path::new("/abs/key"), dir.path()),
        PathBuf::from("/abs/key")
    );
    let p = dir.path().join("pw");
    std::fs::write(&p, "hemmelig\r\n").unwrap();
    assert_eq!(read_secret(&p).unwrap(), "hemmelig");
}

/// Internal domains are compared in the IDNA form addresses have.
#[test]
fn internal_domains_match_in_idna_form() {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        r#"internal_domains = ["siri.dk"]"#,
        r#"internal_domains = ["siri.dk", "Bølle.dk"]"#,
    );
    let cfg = Config::parse(&text, &path).unwrap();
    let a = crate::address::parse("kollega@bølle.dk").unwrap();
    assert!(cfg.is_internal(&a));
    assert!(cfg.is_internal(&crate::address::parse("x@afd.xn--blle-gra.dk").unwrap()));
}

/// `check-config` says what vouches for consultants' mail, and why a
/// Microsoft 365 tenant would not be recognised (issue 12: a trust setting
/// that refused every trigger went unnoticed).
#[test]
fn the_summary_names_the_sender_trust() {
    let with = |edit: &dyn Fn(&mut Table)| {
        let mut t = fixture();
        edit(&mut t);
        parse(&t).expect("valid").summary()
    };
    let none = with(&|t| remove(t, "trust.authserv_id"));
    assert!(
        none.contains("  sender trust    NONE: any mail with a consultant's From invites"),
        "{none}"
    );
    let authserv = with(&|t| set(t, "trust.authserv_id", "mx.siri.dk"));
    assert!(
        authserv.contains("  sender trust    Authentication-Results from mx.siri.dk"),
        "{authserv}"
    );
    let tenant = "5b2c1a9e-3f47-4d0b-9c2e-7a1d4e6f8b30";
    let m365 = with(&|t| {
        set(t, "mailbox.provider", "microsoft365");
        set(t, "mailbox.tenant_id", tenant);
    });
    assert!(
        m365.contains(&format!("Microsoft 365: mail inside tenant {tenant}")),
        "{m365}"
    );
    let domain = with(&|t| {
        set(t, "mailbox.provider", "microsoft365");
        set(t, "mailbox.tenant_id", "contoso.onmicrosoft.com");
    });
    assert!(
        domain.contains("\"contoso.onmicrosoft.com\" is not the Directory (tenant) ID, a GUID"),
        "{domain}"
    );
    let google = with(&|t| set(t, "mailbox.provider", "google"));
    assert!(
        google.contains("  sender trust    Google: mx.google.com's"),
        "{google}"
    );
}
