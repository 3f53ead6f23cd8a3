//! Fixtures shared by the unit tests that drive the loops without servers
//! (`ingest::tests`, `outbox::tests`): a pipeline configured as the demo
//! (config/demo.toml), its store and key in a temp dir.

use std::path::Path;

use crate::config::Config;
use crate::pipeline::Pipeline;

/// The demo's config, copied into `dir/conf` (its `../var` paths then point
/// into `dir`) with `sending` added to its `[sending]`, opened as a pipeline.
pub(crate) fn demo_pipeline(dir: &Path, sending: &str) -> Pipeline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("conf dir");
    for f in ["demo.toml", "survey.da.toml", "survey.en.toml"] {
        std::fs::copy(root.join(f), conf.join(f)).expect("copy the demo config");
    }
    let demo = std::fs::read_to_string(conf.join("demo.toml")).expect("demo.toml");
    assert!(
        demo.contains("\n[sending]\n"),
        "the demo has a [sending] table"
    );
    let demo = demo.replace("\n[sending]\n", &format!("\n[sending]\n{sending}\n"));
    std::fs::write(conf.join("demo.toml"), demo).expect("write demo.toml");
    let cfg = Config::load(&conf.join("demo.toml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.join("var")).expect("var dir");
    crate::address::generate_key_file(&cfg.hmac_key_file).expect("the key");
    Pipeline::open_offline(cfg).expect("open the pipeline")
}

/// A consultant (Sjælland) CCs the survey address, naming `contact`.
pub(crate) fn cc_trigger(message_id: &str, contact: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{message_id}>\r\nDate: Wed, 25 Nov 2026 10:12:00 +0100\r\nFrom: Anne Hansen <anne.hansen@siri.dk>\r\nTo: {contact}\r\nCc: undersoegelse@siri.dk\r\nSubject: Opfølgning\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHej, tak for samtalen.\r\n"
    )
    .into_bytes()
}
