//! `skiplock completions` and `skiplock man` as a packager uses them: the bash script really
//! completes in bash, the man pages really render with `man`, and both name every subcommand
//! the parser knows.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `skiplock ARGS` with no settings around it: generating docs must not need any.
fn skiplock(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .env("SKIPLOCK_CONFIG", "/nonexistent/skiplock.toml")
        .env("SKIPLOCK_DATABASE_URL", "nope://")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every subcommand's name, as the parser lists them in `skiplock --help` (less clap's own
/// `help`, which gets no man page).
fn subcommands() -> Vec<String> {
    let out = skiplock(&["--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    for known in ["migrate", "worker", "serve", "man"] {
        assert!(listed.iter().any(|n| n == known), "{known} not in: {help}");
    }
    listed
}

/// What bash offers after `words`, with the generated script loaded.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script}; COMP_WORDS=({line}); COMP_CWORD={}; COMP_LINE='{line}'; \
         COMP_POINT=${{#COMP_LINE}}; _skiplock skiplock '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words.len() - 1,
        words.last().unwrap(),
        words[words.len() - 2],
        script = script.display(),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_offers_every_subcommand_and_their_flags() {
    let out = skiplock(&["completions", "bash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("skiplock.bash");
    std::fs::write(&script, &out.stdout).unwrap();

    let offered = bash_complete(&script, &["skiplock", ""]);
    for sub in subcommands() {
        assert!(offered.contains(&sub), "{sub} not offered: {offered:?}");
    }
    assert_eq!(bash_complete(&script, &["skiplock", "wor"]), ["worker"]);
    let flags = bash_complete(&script, &["skiplock", "worker", "--con"]);
    assert!(flags.contains(&"--concurrency".to_string()), "{flags:?}");
    assert!(flags.contains(&"--config".to_string()), "{flags:?}");
    let formats = bash_complete(&script, &["skiplock", "--log-format", ""]);
    assert_eq!(formats, ["text", "json"]);
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_shell_is_refused() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = skiplock(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("worker"), "{shell}");
    }
    let out = skiplock(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains("'tcsh'") && e.contains("bash") && e.contains("zsh"),
        "{e}"
    );
    let out = skiplock(&["completions"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("<SHELL>"));
}

/// `man -l` on a page, as plain text; `None` where no man is installed.
fn render(page: &Path) -> Option<String> {
    let out = Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    Some(text(&out.stdout))
}

#[test]
fn the_man_page_has_its_header_and_every_subcommand() {
    let out = skiplock(&["man"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.lines().any(|l| l.starts_with(".TH skiplock 1")),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("skiplock.1");
    std::fs::write(&file, &page).unwrap();
    // Rendered, the SUBCOMMANDS section names each one (roff source escapes dashes).
    let shown = render(&file).unwrap_or_else(|| page.replace("\\-", "-"));
    assert!(shown.contains("SUBCOMMANDS"), "{shown}");
    for sub in subcommands() {
        assert!(
            shown.contains(&format!("skiplock-{sub}(1)")),
            "{sub}: {shown}"
        );
    }
}

#[test]
fn man_out_dir_writes_a_page_per_command_and_refuses_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = skiplock(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let mut pages = vec!["skiplock.1".to_string(), "skiplock-jobs-list.1".to_string()];
    pages.extend(subcommands().iter().map(|s| format!("skiplock-{s}.1")));
    for page in pages {
        let path = dir.path().join(&page);
        assert!(path.is_file(), "{page} missing");
        if let Some(shown) = render(&path) {
            assert!(
                shown.contains("NAME") && shown.contains("SYNOPSIS"),
                "{page}"
            );
        }
    }
    let worker = std::fs::read_to_string(dir.path().join("skiplock-worker.1")).unwrap();
    assert!(
        worker.contains("concurrency"),
        "the worker page lists its flags"
    );

    let missing = dir.path().join("no/such/folder");
    let out = skiplock(&["man", "--out-dir", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("no such folder") && e.contains("no/such/folder"),
        "{e}"
    );
}
