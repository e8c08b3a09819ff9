//! The order of calls `model/src/actors.rs` copies from `src/commands/` must still be the
//! real code's: each transcribed function's adapter calls and steps, read from its source,
//! equal `secops_model::transcribed::TRANSCRIBED`. A failure prints the sequence found: if
//! the command changed, change the actor to match, then the table.

use std::path::Path;

use secops_model::transcribed::{STEPS, TRANSCRIBED};

/// The lines of `fn name` in `source`, from its signature to its closing brace.
fn body<'a>(source: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let lines: Vec<&str> = source.lines().collect();
    let start = lines.iter().position(|line| {
        let words = line
            .trim_start()
            .trim_start_matches("pub ")
            .trim_start_matches("async ");
        words.starts_with(&format!("fn {name}(")) || words.starts_with(&format!("fn {name}<"))
    })?;
    let indent = &lines[start][..lines[start].len() - lines[start].trim_start().len()];
    let close = format!("{indent}}}");
    let end = start + lines[start..].iter().position(|line| *line == close)?;
    Some(lines[start + 1..end].to_vec())
}

/// The adapter calls (`vault.read`, `kube.get_secret`) and the [`STEPS`] called (as
/// functions or methods), in order.
fn calls(lines: &[&str]) -> Vec<String> {
    // rustfmt breaks method chains before the dot: join them back.
    let mut text = String::new();
    for line in lines {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        if !line.starts_with('.') {
            text.push(' ');
        }
        text.push_str(line);
    }
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && is_ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'(') {
            continue;
        }
        let name = &text[start..i];
        let before = &text[..start];
        let adapter = before.strip_suffix('.').and_then(|receiver| {
            ["vault", "kube", "api"].into_iter().find(|adapter| {
                receiver.ends_with(adapter) || receiver.ends_with(&format!("{adapter}()?"))
            })
        });
        match adapter {
            Some(adapter) => found.push(format!("{adapter}.{name}")),
            None if !before.ends_with("fn ") && STEPS.contains(&name) => {
                found.push(name.to_string())
            }
            None => {}
        }
    }
    found
}

#[test]
fn the_copied_call_order_is_the_real_codes() {
    let commands = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/commands");
    let mut drifted = Vec::new();
    for (file, function, expected) in TRANSCRIBED {
        let source = std::fs::read_to_string(commands.join(file)).expect("a command's source");
        let Some(lines) = body(&source, function) else {
            drifted.push(format!("{file}: fn {function} is gone"));
            continue;
        };
        let found = calls(&lines);
        if found != *expected {
            drifted.push(format!(
                "{file}: fn {function} now calls {found:?}\n    the model copied {expected:?}"
            ));
        }
    }
    assert!(
        drifted.is_empty(),
        "src/commands changed the calls the model's actors copy; update model/src/actors.rs, \
         then model/src/transcribed.rs:\n{}",
        drifted.join("\n")
    );
}
