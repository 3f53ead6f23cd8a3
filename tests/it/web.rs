//! Every state of the survey link over real HTTP: the form, missing answers
//! re-shown, the answer stored once, second submissions refused, unknown links
//! rate-limited, closed survey, bounded bodies, security headers.

use crate::common;

use std::sync::Arc;

use canvass::pipeline::Pipeline;
use canvass::shutdown::Shutdown;
use common::*;

struct Web {
    addr: String,
    pipeline: Arc<Pipeline>,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

impl Drop for Web {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start(extra_window: &str) -> Web {
    let extra = extra_window.to_string();
    start_edited(move |_, text| {
        if extra.is_empty() {
            text
        } else {
            text.replace("[sending]", &format!("{extra}\n\n[sending]"))
        }
    })
    .await
}

/// The daemon's web side on `file_config`, its text changed by `edit`.
async fn start_edited(edit: impl FnOnce(&std::path::Path, String) -> String) -> Web {
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let path = file_config(dir.path(), (&s, &e), "");
    let text = edit(dir.path(), std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, text).unwrap();
    let pipeline = pipeline(&path);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = Shutdown::new();
    tokio::spawn(canvass::web::run(
        listener,
        pipeline.clone(),
        shutdown.clone(),
    ));
    Web {
        addr,
        pipeline,
        shutdown,
        _dir: dir,
    }
}

/// Invites `addr` and returns the link path from the queued invitation.
fn invite(w: &Web, addr: &str) -> String {
    link_in(&invitation_raw(w, addr)).expect("link")
}

/// The invitation to `addr` as it is sent.
fn invitation_raw(w: &Web, addr: &str) -> Vec<u8> {
    w.pipeline
        .invite_manual(&[addr.to_string()], "Sjælland")
        .unwrap();
    let (due, _) = w
        .pipeline
        .store
        .outbox_due(chrono::Utc::now() + chrono::Duration::days(1), 1000)
        .unwrap();
    let item = due
        .iter()
        .find(|i| i.to == [addr.to_string()])
        .expect("queued");
    as_sent(&w.pipeline, item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_answer_once_and_every_page_state() {
    let w = start("").await;
    let link = invite(&w, "kontakt@kommune.test");
    let addr = w.addr.clone();

    // The form.
    let (a, l) = (addr.clone(), link.clone());
    let (status, head, body) = blocking(move || http(&a, "GET", &l, "text/plain", b"")).await;
    assert_eq!(status, 200);
    assert!(body.contains("<html lang=\"da\">"));
    assert!(body.contains("Hvilken type organisation arbejder du i?"));
    let head = head.to_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("referrer-policy: no-referrer"));
    assert!(head.contains("x-content-type-options: nosniff"));
    assert!(head.contains("x-frame-options: deny"));
    assert!(
        body.len() < 30_000,
        "the form page weighs {} bytes",
        body.len()
    );

    // Missing answers: 422, messages, entries kept, nothing stored.
    let (a, l) = (addr.clone(), link.clone());
    let (status, _, body) = blocking(move || {
        http(
            &a,
            "POST",
            &l,
            "application/x-www-form-urlencoded",
            &form_body(&[("organisation", "politi"), ("kommentarer", "æøå")]),
        )
    })
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("Der mangler svar"));
    assert!(body.contains("Vælg mindst ét svar."));
    assert!(body.contains("value=\"politi\" checked"));
    assert!(body.contains(">æøå</textarea>"));
    assert_eq!(w.pipeline.store.response_count(), 0);

    // A complete answer: thanks, stored exactly, invitation answered.
    let (a, l) = (addr.clone(), link.clone());
    let (status, _, body) = blocking(move || {
        http(
            &a,
            "POST",
            &l,
            "application/x-www-form-urlencoded",
            &form_body(&complete_answer()),
        )
    })
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Tak for dit svar"));
    let stored: Vec<_> = w.pipeline.store.responses().map(|r| r.unwrap()).collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].region.as_deref(), Some("Sjælland"));
    match &stored[0].answers["kommentarer"] {
        canvass::answer::Value::Text { text } => {
            assert_eq!(text, "Rigtig god hjælp, tak! Søren & Åse <3 🎉")
        }
        other => panic!("{other:?}"),
    }

    // Second visit and second submission: polite, nothing stored.
    let (a, l) = (addr.clone(), link.clone());
    let (status, _, body) = blocking(move || http(&a, "GET", &l, "text/plain", b"")).await;
    assert_eq!(status, 200);
    assert!(body.contains("du har allerede svaret"));
    let (a, l) = (addr.clone(), link.clone());
    let (status, _, _) = blocking(move || {
        http(
            &a,
            "POST",
            &l,
            "application/x-www-form-urlencoded",
            &form_body(&complete_answer()),
        )
    })
    .await;
    assert_eq!(status, 409);
    assert_eq!(w.pipeline.store.response_count(), 1);

    // Wrong content type, oversized body.
    let l2 = invite(&w, "to@kommune.test");
    let (a, l) = (addr.clone(), l2.clone());
    let (status, _, _) = blocking(move || http(&a, "POST", &l, "application/json", b"{}")).await;
    assert_eq!(status, 415);
    let (a, l) = (addr.clone(), l2.clone());
    let big = vec![b'a'; canvass::web::MAX_BODY + 10];
    let (status, _, _) =
        blocking(move || http(&a, "POST", &l, "application/x-www-form-urlencoded", &big)).await;
    assert_eq!(status, 413);

    // Health and the stylesheet.
    let a = addr.clone();
    assert_eq!(blocking(move || http_get(&a, "/healthz")).await.0, 200);
    let a = addr.clone();
    assert_eq!(
        blocking(move || http_get(&a, "/assets/form.css")).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_links_are_404_then_rate_limited() {
    let w = start("").await;
    let link = invite(&w, "kontakt@kommune.test");
    let addr = w.addr.clone();
    let statuses = blocking(move || {
        let mut v = Vec::new();
        v.push(http_get(&addr, "/s/not-a-token").0);
        for i in 0..canvass::web::MAX_MISSES {
            v.push(http_get(&addr, &format!("/s/{:0>22}", i)).0);
        }
        v.push(http_get(&addr, "/s/one-too-many").0);
        v.push(http_get(&addr, &link).0);
        v
    })
    .await;
    assert!(
        statuses[..canvass::web::MAX_MISSES as usize]
            .iter()
            .all(|s| *s == 404),
        "{statuses:?}"
    );
    // Past the limit, unknown links wait; a valid link never does (issue 14:
    // it was 429, so one guesser behind a shared address locked out everyone).
    assert_eq!(statuses[statuses.len() - 2], 429, "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 200, "{statuses:?}");
}

/// Issue 14, item 10: only the prefix of the media type was checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_takes_exactly_its_media_type() {
    let w = start("").await;
    let link = invite(&w, "kontakt@kommune.test");
    let addr = w.addr.clone();
    let statuses = blocking(move || {
        let body = form_body(&complete_answer());
        [
            "application/x-www-form-urlencodedXYZ",
            "application/x-www-form-urlencoded-evil; charset=utf-8",
            "text/plain",
            "Application/X-WWW-Form-Urlencoded ; charset=UTF-8",
        ]
        .map(|ct| http(&addr, "POST", &link, ct, &body).0)
    })
    .await;
    assert_eq!(statuses, [415, 415, 415, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_survey_says_so() {
    let w = start("").await;
    let link = invite(&w, "kontakt@kommune.test");
    // Reload with a window that closed for answers yesterday.
    let mut cfg = (*w.pipeline.config()).clone();
    cfg.answers_until = chrono::Utc::now().date_naive() - chrono::Duration::days(2);
    w.pipeline.set_config(Arc::new(cfg));
    let addr = w.addr.clone();
    let (status, body) = blocking(move || http_get(&addr, &link)).await;
    assert_eq!(status, 410);
    assert!(body.contains("Undersøgelsen er lukket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_persons_link_says_it_was_withdrawn() {
    let w = start("").await;
    let link = invite(&w, "glem.mig@kommune.test");
    let addr = canvass::address::parse("glem.mig@kommune.test").unwrap();
    w.pipeline
        .store
        .forget(&w.pipeline.key.key_of(&addr), &addr)
        .unwrap();
    let a = w.addr.clone();
    let (status, body) = blocking(move || http_get(&a, &link)).await;
    assert_eq!(status, 410);
    assert!(body.contains("ikke længere gyldigt"), "{body}");
}

/// A GET with an `Accept-Language` header: (status, body).
fn get_with_language(addr: &str, path: &str, lang: &str) -> (u16, String) {
    http_get_with(addr, path, &format!("Accept-Language: {lang}\r\n"))
}

fn opted_out(w: &Web, link: &str) -> bool {
    let token = canvass::token::Token::from_url(link.trim_start_matches("/s/")).expect("token");
    match w.pipeline.store.link(&token).unwrap() {
        canvass::store::Link::Invitation(i) => i.opted_out,
        other => panic!("{other:?}"),
    }
}

fn opted_out_count(w: &Web) -> u64 {
    w.pipeline
        .store
        .counters()
        .unwrap()
        .iter()
        .filter(|(_, n, _)| n == "opted_out")
        .map(|c| c.2)
        .sum()
}

/// RFC 8058: the invitation names an HTTPS opt-out link and one-click POST;
/// a GET (a mail scanner, a link preview) shows a button and opts nobody
/// out (LimeSurvey issue 20317 was that failure); Gmail's bare POST does,
/// once; the form page offers the same button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_opt_out_is_a_post_never_a_get() {
    let w = start("").await;
    let raw = invitation_raw(&w, "scannet@kommune.test");
    let link = link_in(&raw).unwrap();
    let unsub = link.replace("/s/", "/u/");
    let head = String::from_utf8_lossy(&raw).replace("\r\n ", " ");
    assert!(
        head.contains(&format!(
            "List-Unsubscribe: <http://127.0.0.1:1{unsub}>, <mailto:undersoegelse@siri.test?subject=afmeld%20canvass."
        )),
        "{head}"
    );
    assert!(head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));

    // A scanner follows every link, several times: nobody is opted out.
    for path in [unsub.clone(), unsub.clone(), link.clone()] {
        let a = w.addr.clone();
        let (status, body) = blocking(move || http_get(&a, &path)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(!opted_out(&w, &link));
    let a = w.addr.clone();
    let u = unsub.clone();
    let (_, page) = blocking(move || http_get(&a, &u)).await;
    assert!(page.contains("Jeg ønsker ikke at deltage"), "{page}");
    assert!(
        page.contains(&format!("action=\"{unsub}?lang=da\"")),
        "{page}"
    );
    // The form page has the same button.
    let a = w.addr.clone();
    let l = link.clone();
    let (_, form) = blocking(move || http_get(&a, &l)).await;
    assert!(form.contains(&format!("action=\"{unsub}\"")), "{form}");
    assert!(form.contains("Jeg ønsker ikke at deltage"));

    // A POST without the one-click body does nothing.
    let (a, u) = (w.addr.clone(), unsub.clone());
    let (status, _, _) =
        blocking(move || http(&a, "POST", &u, "application/x-www-form-urlencoded", b"")).await;
    assert_eq!(status, 400);
    assert!(!opted_out(&w, &link));

    // Gmail's POST: opted out, counted once, also when repeated.
    for _ in 0..2 {
        let (a, u) = (w.addr.clone(), unsub.clone());
        let (status, _, body) = blocking(move || {
            http(
                &a,
                "POST",
                &u,
                "application/x-www-form-urlencoded",
                b"List-Unsubscribe=One-Click",
            )
        })
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Du har frameldt dig"), "{body}");
    }
    assert!(opted_out(&w, &link));
    assert_eq!(opted_out_count(&w), 1);
    // The same state as an "afmeld" reply: the form is closed to them.
    let a = w.addr.clone();
    let l = link.clone();
    let (status, body) = blocking(move || http_get(&a, &l)).await;
    assert_eq!(status, 200);
    assert!(body.contains("Du har frameldt dig"));
    // Not final: a regretted (or forged) opt-out can still answer.
    assert!(body.contains("?svar=alligevel"), "{body}");

    // An unknown opt-out link is a miss like any unknown link.
    let a = w.addr.clone();
    let (status, _, _) = blocking(move || {
        http(
            &a,
            "POST",
            "/u/AAAAAAAAAAAAAAAAAAAAAA",
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click",
        )
    })
    .await;
    assert_eq!(status, 404);
}

/// GDPR art. 14 in the invitation and on /privatliv; the footer (statement
/// link, contact) on every page; English by `?lang=en` or Accept-Language,
/// pooled by option code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_page_footer_and_english_form() {
    let en = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.en.toml");
    let w = start_edited(move |_, t| {
        t.replace(
            "base_url = \"http://127.0.0.1:1\"\n",
            &format!("base_url = \"http://127.0.0.1:1\"\ndefinition_en = \"{}\"\n", en.display()),
        )
        .replace(
            "[web]\n",
            "[privacy]\ncontroller = \"Styrelsen for Eksempler, Eksempelvej 1\"\ndpo = \"dpo@siri.test\"\npurpose = \"at forbedre ordningen\"\nlegal_basis = \"artikel 6, stk. 1, litra e\"\ncontact = \"spoergsmaal@siri.test\"\n\n[web]\naccessibility_statement_url = \"https://was.digst.dk/eksempel\"\n",
        )
    })
    .await;
    let raw = invitation_raw(&w, "dpo.laeser@kommune.test");
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let text = msg.body_text(0).unwrap().into_owned();
    for must in [
        "fordi du har været i kontakt med vores",
        "sikkerhedskonsulenter",
        "Styrelsen for Eksempler, Eksempelvej 1 er dataansvarlig",
        "Formålet er at forbedre ordningen",
        "Retsgrundlaget er",
        "artikel 6, stk. 1, litra e",
        "Adressen slettes 30 dage",
        "indsigelse",
        "Datatilsynet",
        "Databeskyttelsesrådgiver: dpo@siri.test",
        "http://127.0.0.1:1/privatliv",
        "In English:",
        "?lang=en",
    ] {
        assert!(
            text.contains(must),
            "{must:?} is not in the invitation:\n{text}"
        );
    }
    let link = link_in(&raw).unwrap();

    let a = w.addr.clone();
    let (status, page) = blocking(move || http_get(&a, "/privatliv")).await;
    assert_eq!(status, 200);
    for must in [
        "Styrelsen for Eksempler",
        "dpo@siri.test",
        "at forbedre ordningen",
        "artikel 6, stk. 1, litra e",
        "har været i kontakt med vores sikkerhedskonsulenter",
        "30 dage",
        "gøre indsigelse",
        "klage til Datatilsynet",
        "spoergsmaal@siri.test",
    ] {
        assert!(page.contains(must), "{must:?} is not on /privatliv");
    }

    // The footer on the form, the privacy page and a 404.
    for path in [
        link.clone(),
        "/privatliv".to_string(),
        "/findes-ikke".to_string(),
    ] {
        let a = w.addr.clone();
        let (_, body) = blocking(move || http_get(&a, &path)).await;
        assert!(body.contains("<footer class=\"site-footer\">"), "{body}");
        assert!(
            body.contains("href=\"https://was.digst.dk/eksempel\">Tilgængelighedserklæring</a>"),
            "{body}"
        );
        assert!(body.contains("mailto:spoergsmaal@siri.test"), "{body}");
    }

    // English: asked for by the browser, or by the switch; Danish by default.
    let (a, l) = (w.addr.clone(), link.clone());
    let (_, da) = blocking(move || get_with_language(&a, &l, "da-DK,da;q=0.9,en;q=0.8")).await;
    assert!(da.contains("<html lang=\"da\">") && da.contains("Hvilken type organisation"));
    assert!(da.contains(&format!("href=\"{link}?lang=en\"")), "{da}");
    let (a, l) = (w.addr.clone(), link.clone());
    let (_, en) = blocking(move || get_with_language(&a, &l, "en-GB,en;q=0.9")).await;
    assert!(en.contains("<html lang=\"en\">"), "{en}");
    assert!(en.contains("What type of organisation do you work in?"));
    assert!(en.contains("I don't want to take part"), "{en}");
    // The English form's footer leads to the privacy page in English, with
    // the agency's own wording quoted.
    assert!(
        en.contains("href=\"/privatliv?lang=en\">Privacy</a>"),
        "{en}"
    );
    let a = w.addr.clone();
    let (status, page) = blocking(move || http_get(&a, "/privatliv?lang=en")).await;
    assert_eq!(status, 200);
    for must in [
        "<html lang=\"en\">",
        "How we handle your information",
        "Styrelsen for Eksempler",
        "at forbedre ordningen",
        "30 days",
        "right to object",
        "Datatilsynet",
    ] {
        assert!(
            page.contains(must),
            "{must:?} is not on /privatliv?lang=en:\n{page}"
        );
    }
    // Errors in English, then an English answer stored with the same codes.
    let (a, l) = (w.addr.clone(), format!("{link}?lang=en"));
    let (status, _, body) = blocking(move || {
        http(
            &a,
            "POST",
            &l,
            "application/x-www-form-urlencoded",
            &form_body(&[("organisation", "politi")]),
        )
    })
    .await;
    assert_eq!(status, 422);
    assert!(
        body.contains("Some answers are missing") && body.contains("Please choose an answer."),
        "{body}"
    );
    let (a, l) = (w.addr.clone(), format!("{link}?lang=en"));
    let (status, _, body) = blocking(move || {
        http(
            &a,
            "POST",
            &l,
            "application/x-www-form-urlencoded",
            &form_body(&complete_answer()),
        )
    })
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("Thank you for your answer"), "{body}");
    let stored: Vec<_> = w.pipeline.store.responses().map(|r| r.unwrap()).collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].answers["organisation"],
        canvass::answer::Value::Single {
            code: "krisecenter".into(),
            other: None
        }
    );
    assert_eq!(stored[0].survey_id, "siri-sikkerhedskonsulentordningen");
}

/// The agency's texts on a running daemon: a reload with a broken template
/// is rejected (the old text stays), a fixed one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agency_texts_are_validated_on_reload() {
    let page = |v: &str| {
        format!("{{% extends \"layout.html\" %}}{{% block content %}}<h1>{{{{ kind }}}}</h1><p>{v}</p>{{% endblock %}}")
    };
    let first = page("Version 1");
    let w = start_edited(move |dir, t| {
        std::fs::create_dir(dir.join("tekster")).unwrap();
        std::fs::write(dir.join("tekster/error.html"), first).unwrap();
        t.replace(
            "base_url = \"http://127.0.0.1:1\"\n",
            "base_url = \"http://127.0.0.1:1\"\ntemplates_dir = \"tekster\"\n",
        )
    })
    .await;
    let path = w.pipeline.config().path.clone();
    let file = path.parent().unwrap().join("tekster/error.html");
    let shown = |w: &Web| {
        let a = w.addr.clone();
        async move { blocking(move || http_get(&a, "/findes-ikke")).await.1 }
    };
    let first = shown(&w).await;
    assert!(
        first.contains("Version 1") && first.contains("<h1>not_found</h1>"),
        "{first}"
    );
    std::fs::write(
        &file,
        "{% extends \"layout.html\" %}{% block content %}{{ titel }}{% endblock %}",
    )
    .unwrap();
    canvass::daemon::reload(&path, &w.pipeline);
    assert!(
        shown(&w).await.contains("Version 1"),
        "a broken text was taken"
    );
    std::fs::write(&file, page("Version 2")).unwrap();
    canvass::daemon::reload(&path, &w.pipeline);
    assert!(shown(&w).await.contains("Version 2"));
}
