//! The projector's command line: `--help` says what it runs and what it reads, and a command it
//! does not know is refused with the usage, not run as the live projection.

use std::process::Command as Process;

#[test]
fn the_command_line_explains_itself_and_refuses_what_it_does_not_know() {
    let help = Process::new(env!("CARGO_BIN_EXE_projector"))
        .arg("--help")
        .output()
        .expect("projector --help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{help:?}");
    assert!(
        text.contains("rebuild") && text.contains("MONGODB_URI"),
        "{text}"
    );
    for wrong in ["rebuld", "rebuild\u{200b}", "--rebuild"] {
        let refused = Process::new(env!("CARGO_BIN_EXE_projector"))
            .arg(wrong)
            .output()
            .expect("projector");
        assert_eq!(refused.status.code(), Some(2), "{wrong:?}: {refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("Usage: projector"),
            "{wrong:?}: {refused:?}"
        );
    }
}
