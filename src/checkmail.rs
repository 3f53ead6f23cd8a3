//! `canvass check-mail`: the first thing an operator runs. With the
//! configured credentials it gets a token (and says when it expires), logs in
//! to IMAP, lists the capabilities canvass uses, checks the folders, and
//! authenticates to SMTP and has the survey address accepted as MAIL FROM,
//! then RSET and QUIT: no mail is sent, nothing in the mailbox changes.
//!
//! One line per check; each failure comes with the fix for the configured
//! provider ([`fix`] is pure and unit-tested). Exit status 0 when every
//! check passed, 1 otherwise.

use std::fmt::Write;

use crate::config::{Config, Inbound, Outbound};
use crate::ingest::imap::{ImapCheck, ImapSource};
use crate::ingest::SourceError;
use crate::oauth::{Provider, TokenSource};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do, for a failure.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix,
        }
    }
}

/// What went wrong, by kind, for [`fix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The token endpoint refused or could not be reached.
    Token,
    /// The IMAP server refused the login (token or password).
    ImapLogin,
    /// The configured mailbox does not exist.
    NoSuchMailbox,
    /// The configured sent folder does not exist.
    NoSuchSentFolder,
    /// The SMTP server refused AUTH, or does not offer it.
    SmtpAuth,
    /// MAIL FROM with the survey address was refused.
    MailFrom,
}

/// The fix for `problem` at `provider`, given the server's words (pure).
pub fn fix(provider: Provider, problem: Problem, text: &str, folders: &[String]) -> Option<String> {
    use Problem::*;
    use Provider::*;
    Some(match (provider, problem) {
        (_, Token) => return None, // the token error carries its own hint
        (Microsoft365, ImapLogin) => "the app's service principal has no FullAccess to the mailbox, or IMAP.AccessAsApp lacks admin consent: `New-ServicePrincipal -AppId <client id> -ObjectId <enterprise app object id>`, then `Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess` (docs/microsoft365.md)".into(),
        (Google, ImapLogin) => "authorise the service account's client id for https://mail.google.com/ under Security > API controls > Domain-wide delegation, and enable IMAP for the user (docs/google.md)".into(),
        (Generic, ImapLogin) => "check inbound.imap.username and the password file or [auth] settings; the server's words are above".into(),
        (_, NoSuchMailbox | NoSuchSentFolder) => {
            let key = if problem == NoSuchMailbox { "mailbox" } else { "sent_folder" };
            let list = folders.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
            format!("set inbound.imap.{key} to an existing folder; the server has: {list}")
        }
        (_, SmtpAuth) => crate::transport::smtp::smtp_auth_hint(provider, text)
            .map(str::to_string)
            .or_else(|| match provider {
                Microsoft365 => Some("grant SMTP.SendAsApp with admin consent and give the service principal FullAccess (`Add-MailboxPermission`)".into()),
                _ => None,
            })?,
        (Microsoft365, MailFrom) => "the survey address must be the mailbox itself (or one it may send as): set survey.address to the mailbox, or `Add-RecipientPermission <address> -AccessRights SendAs -Trustee <service principal id>`".into(),
        (Google, MailFrom) => "the survey address must be the delegated mailbox or one of its verified send-as aliases".into(),
        (Generic, MailFrom) => "the server does not let this login send as survey.address: check the server's sender login maps".into(),
    })
}

/// Runs every check against the configured servers.
pub async fn run(cfg: &Config) -> Vec<Check> {
    let provider = cfg.mailbox.provider;
    let mut checks = Vec::new();
    let mut token_ok = true;
    if let Some(o) = cfg.oauth() {
        match TokenSource::shared(o) {
            Err(e) => {
                token_ok = false;
                checks.push(Check::fail("token", e.to_string(), None));
            }
            Ok(tokens) => match tokens.token().await {
                Ok(_) => {
                    let until = tokens
                        .state()
                        .expires_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_else(|| "an unknown time".into());
                    checks.push(Check::pass(
                        "token",
                        format!(
                            "got an access token from {}, valid until {until}",
                            o.token_url
                        ),
                    ));
                }
                Err(e) => {
                    token_ok = false;
                    checks.push(Check::fail("token", e.to_string(), None));
                }
            },
        }
    }

    match &cfg.inbound {
        Inbound::Imap(i) if token_ok => {
            let source = ImapSource::new(i);
            match source.check().await {
                Ok(c) => imap_checks(&mut checks, provider, i, &c),
                Err(e) => {
                    let problem = match &e {
                        SourceError::Auth { .. } | SourceError::Token { .. } => {
                            Some(Problem::ImapLogin)
                        }
                        _ => None,
                    };
                    let fix = problem.and_then(|p| fix(provider, p, &e.to_string(), &[]));
                    checks.push(Check::fail("imap login", e.to_string(), fix));
                }
            }
        }
        Inbound::Imap(_) => checks.push(Check::fail("imap login", "skipped: no token", None)),
        Inbound::Maildir(m) => checks.push(Check::pass(
            "inbound",
            format!("Maildir {} (no IMAP to check)", m.path.display()),
        )),
    }

    match &cfg.outbound {
        Outbound::Smtp(s) if token_ok => match crate::transport::smtp::SmtpTransport::new(s) {
            Err(e) => checks.push(Check::fail("smtp", format!("{e:#}"), None)),
            Ok(t) => match t.check_mail(cfg.survey_address.as_str()).await {
                Ok(detail) => checks.push(Check::pass("smtp", detail)),
                Err(e) => {
                    let problem = if e.message.contains("MAIL FROM") {
                        Problem::MailFrom
                    } else {
                        Problem::SmtpAuth
                    };
                    let f = if e.message.contains("AUTH") || problem == Problem::MailFrom {
                        fix(provider, problem, &e.message, &[])
                    } else {
                        None
                    };
                    // The transport's error carries the hint for the log;
                    // here it goes on the fix line.
                    let detail = match &f {
                        Some(f) => e.message.replace(&format!(" ({f})"), ""),
                        None => e.message,
                    };
                    checks.push(Check::fail("smtp", detail, f));
                }
            },
        },
        Outbound::Smtp(_) => checks.push(Check::fail("smtp", "skipped: no token", None)),
        Outbound::File(dir) => checks.push(Check::pass(
            "outbound",
            format!(".eml files in {} (no SMTP to check)", dir.display()),
        )),
    }
    checks
}

fn imap_checks(
    checks: &mut Vec<Check>,
    provider: Provider,
    i: &crate::config::ImapConfig,
    c: &ImapCheck,
) {
    checks.push(Check::pass(
        "imap login",
        format!("logged in to {}:{} as {}", i.host, i.port, i.username),
    ));
    let has = |cap: &str| c.capabilities.iter().any(|x| x.eq_ignore_ascii_case(cap));
    let mut missing = Vec::new();
    for (cap, without) in [
        ("IDLE", "new mail is polled every 5 s"),
        ("MOVE", "processed mail is flagged \\Seen but not moved"),
        ("UIDPLUS", "none"),
        ("SPECIAL-USE", "none"),
    ] {
        if !has(cap) && without != "none" {
            missing.push(format!("{cap} (without it {without})"));
        }
    }
    let used: Vec<&str> = ["IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"]
        .into_iter()
        .filter(|c| has(c))
        .collect();
    checks.push(Check::pass(
        "imap capabilities",
        if missing.is_empty() {
            format!("{} offered", used.join(", "))
        } else {
            format!(
                "{} offered; missing {}",
                used.join(", "),
                missing.join(", ")
            )
        },
    ));
    if c.mailbox_exists {
        checks.push(Check::pass(
            "imap folder",
            format!("{:?} exists", i.mailbox),
        ));
    } else {
        checks.push(Check::fail(
            "imap folder",
            format!("inbound.imap.mailbox {:?} does not exist", i.mailbox),
            fix(provider, Problem::NoSuchMailbox, "", &c.folders),
        ));
    }
    if let (Some(to), Some(exists)) = (&i.move_to, c.move_to_exists) {
        checks.push(Check::pass(
            "imap move_to",
            if exists {
                format!("{to:?} exists")
            } else {
                format!("{to:?} does not exist yet; canvass creates it when it first moves mail")
            },
        ));
    }
    checks.push(Check::pass(
        "imap quarantine",
        if c.quarantine_exists {
            format!("{:?} exists", i.quarantine)
        } else {
            format!(
                "{:?} does not exist yet; canvass creates it when it first sets an unreadable message aside",
                i.quarantine
            )
        },
    ));
    checks.push(match &c.sent_folder {
        Some((name, true)) => Check::pass(
            "imap sent folder",
            format!("{name:?} (the retention sweep deletes canvass' sent copies there)"),
        ),
        Some((name, false)) => Check::fail(
            "imap sent folder",
            format!("inbound.imap.sent_folder {name:?} does not exist"),
            fix(provider, Problem::NoSuchSentFolder, "", &c.folders),
        ),
        None => Check::pass(
            "imap sent folder",
            "none marked \\Sent and inbound.imap.sent_folder not set: set it if the server keeps copies of sent mail",
        ),
    });
}

/// The report: one line per check, the fix indented below a failure.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let _ = writeln!(
            s,
            "{} {:<17} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
        if let Some(f) = &c.fix {
            let _ = writeln!(s, "     fix: {f}");
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        let _ = writeln!(s, "all {} checks passed", checks.len());
    } else {
        let _ = writeln!(s, "{failed} of {} checks failed", checks.len());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_auth_off_gets_the_provider_fix() {
        let f = fix(
            Provider::Microsoft365,
            Problem::SmtpAuth,
            "503 5.5.1 Error: authentication not enabled",
            &[],
        )
        .unwrap();
        assert!(
            f.contains(
                "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false"
            ),
            "{f}"
        );
        let f = fix(
            Provider::Microsoft365,
            Problem::SmtpAuth,
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox",
            &[],
        )
        .unwrap();
        assert!(f.contains("Set-CASMailbox"), "{f}");
        let f = fix(
            Provider::Generic,
            Problem::SmtpAuth,
            "503 5.5.1 Error: authentication not enabled",
            &[],
        )
        .unwrap();
        assert!(f.contains("does not offer SMTP AUTH"), "{f}");
    }

    #[test]
    fn a_refused_imap_login_at_microsoft_names_add_mailboxpermission() {
        let f = fix(
            Provider::Microsoft365,
            Problem::ImapLogin,
            "AUTHENTICATE failed.",
            &[],
        )
        .unwrap();
        assert!(f.contains("Add-MailboxPermission"), "{f}");
        assert!(f.contains("New-ServicePrincipal"), "{f}");
    }

    #[test]
    fn a_wrong_folder_lists_the_folders() {
        let f = fix(
            Provider::Generic,
            Problem::NoSuchMailbox,
            "",
            &["INBOX".into(), "Sent".into()],
        )
        .unwrap();
        assert!(f.contains("INBOX, Sent"), "{f}");
        let f = fix(
            Provider::Microsoft365,
            Problem::NoSuchSentFolder,
            "",
            &["INBOX".into(), "Sent Items".into()],
        )
        .unwrap();
        assert_eq!(
            f,
            "set inbound.imap.sent_folder to an existing folder; the server has: INBOX, Sent Items"
        );
    }

    #[test]
    fn the_report_has_one_line_per_check_and_a_verdict() {
        let r = render(&[
            Check::pass("token", "valid until x"),
            Check::fail("smtp", "refused", Some("do y".into())),
        ]);
        assert_eq!(
            r,
            "ok   token             valid until x\nFAIL smtp              refused\n     fix: do y\n1 of 2 checks failed\n"
        );
    }
}
