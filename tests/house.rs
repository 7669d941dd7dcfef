//! The rooms of `src/` import each other without cycles (docs/architecture.md, "How the rooms
//! import each other").
//!
//! A room is a top-level module of the library: `src/<room>.rs` or `src/<room>/`. Room A
//! depends on room B when A's code names B: `crate::B` anywhere (also as an item of a
//! `use crate::{...}` group), or a `super::` path that climbs to the crate root and goes on to
//! B. The files are found as rustc finds them, by following `mod x;` from `src/lib.rs` (the
//! `harp` binary in `src/main.rs` is another crate and no room). Only code counts: comments,
//! string and character literals are skipped, and so are items under `#[cfg(test)]` (test
//! modules may reach across the house for fixtures).
//!
//! The scan reads files only, spawns nothing and takes a few milliseconds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// Rooms and who imports whom: `graph[a][b]` lists where room `a` names room `b`
/// (`src/file.rs:line`).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A string, character or number literal; what is inside never counts.
    Literal,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Rust source as tokens, with comments (nested block comments too), string literals (also
/// byte, C and raw strings) and character literals reduced to `Literal` or dropped. Lifetimes
/// and loop labels are dropped. Not a full lexer: enough to tell code from text.
fn lex(source: &str) -> Vec<Token> {
    let c: Vec<char> = source.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal whose opening quote is at `i`; `\` escapes the next character.
    let quoted = |mut i: usize, quote: char, line: &mut usize| -> usize {
        i += 1;
        while i < c.len() && c[i] != quote {
            if c[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    // Skips a raw string whose `#`s or opening quote start at `i`.
    let raw = |mut i: usize, line: &mut usize| -> usize {
        let mut hashes = 0;
        while at(i) == '#' {
            hashes += 1;
            i += 1;
        }
        i += 1; // the opening quote
        while i < c.len() {
            if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                return i + 1 + hashes;
            }
            if c[i] == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i
    };
    while i < c.len() {
        let ch = c[i];
        let start_line = line;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = quoted(i, '"', &mut line);
            out.push(Token {
                tok: Tok::Literal,
                line: start_line,
            });
        } else if ch == '\'' {
            if at(i + 1) == '\\' || (at(i + 1) != '\'' && at(i + 2) == '\'') {
                i = quoted(i, '\'', &mut line);
                out.push(Token {
                    tok: Tok::Literal,
                    line: start_line,
                });
            } else {
                // A lifetime or a label: `'a`, `'static`.
                i += 1;
                while is_ident_char(at(i)) {
                    i += 1;
                }
            }
        } else if is_ident_start(ch) {
            let begin = i;
            while is_ident_char(at(i)) {
                i += 1;
            }
            let word: String = c[begin..i].iter().collect();
            let next = at(i);
            let mut after_hashes = i;
            while at(after_hashes) == '#' {
                after_hashes += 1;
            }
            let tok = match word.as_str() {
                "r" | "br" | "cr" if at(after_hashes) == '"' => {
                    i = raw(i, &mut line);
                    Tok::Literal
                }
                "r" if next == '#' && is_ident_start(at(i + 1)) => {
                    // A raw identifier, `r#type`.
                    let begin = i + 1;
                    i += 1;
                    while is_ident_char(at(i)) {
                        i += 1;
                    }
                    Tok::Ident(c[begin..i].iter().collect())
                }
                "b" | "c" if next == '"' => {
                    i = quoted(i, '"', &mut line);
                    Tok::Literal
                }
                "b" if next == '\'' => {
                    i = quoted(i, '\'', &mut line);
                    Tok::Literal
                }
                _ => Tok::Ident(word),
            };
            out.push(Token {
                tok,
                line: start_line,
            });
        } else if ch.is_ascii_digit() {
            while is_ident_char(at(i)) || (at(i) == '.' && at(i + 1).is_ascii_digit()) {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Literal,
                line: start_line,
            });
        } else if ch == ':' && at(i + 1) == ':' {
            i += 2;
            out.push(Token {
                tok: Tok::PathSep,
                line: start_line,
            });
        } else {
            i += 1;
            out.push(Token {
                tok: Tok::Punct(ch),
                line: start_line,
            });
        }
    }
    out
}

/// What one file names: the top-level modules it reaches (`crate::x`, `super::...::x` up to the
/// crate root), by line, and the `mod x;` files it declares, by module path.
#[derive(Default)]
struct FileScan {
    names: Vec<(String, usize)>,
    children: Vec<Vec<String>>,
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(name)) => Some(name),
        _ => None,
    }
}

fn punct(tokens: &[Token], i: usize, ch: char) -> bool {
    matches!(tokens.get(i).map(|t| &t.tok), Some(Tok::Punct(p)) if *p == ch)
}

fn path_sep(tokens: &[Token], i: usize) -> bool {
    matches!(tokens.get(i).map(|t| &t.tok), Some(Tok::PathSep))
}

/// The index after the bracketed group opening at `i` (`open` at `i`, nested ones counted).
fn skip_group(tokens: &[Token], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < tokens.len() {
        if punct(tokens, i, open) {
            depth += 1;
        } else if punct(tokens, i, close) {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// `#[cfg(test)]` (or `#![cfg(test)]` when `inner`) starting at `i`: the index after it.
fn cfg_test_at(tokens: &[Token], i: usize) -> Option<(usize, bool)> {
    if !punct(tokens, i, '#') {
        return None;
    }
    let inner = punct(tokens, i + 1, '!');
    let j = i + 1 + usize::from(inner);
    let is_cfg_test = punct(tokens, j, '[')
        && ident(tokens, j + 1) == Some("cfg")
        && punct(tokens, j + 2, '(')
        && ident(tokens, j + 3) == Some("test")
        && punct(tokens, j + 4, ')')
        && punct(tokens, j + 5, ']');
    is_cfg_test.then_some((j + 6, inner))
}

/// Words that start an item (after its visibility).
const ITEM_KEYWORDS: [&str; 15] = [
    "fn",
    "mod",
    "impl",
    "struct",
    "enum",
    "union",
    "const",
    "static",
    "use",
    "type",
    "trait",
    "async",
    "unsafe",
    "extern",
    "macro_rules",
];

/// The index after what the attribute just before `i` applies to, its further attributes
/// included. An item ends at its first `;` outside brackets or with its first `{...}` block;
/// anything else (a field, a variant, a statement) at a `,` or `;` outside brackets, or before
/// the bracket that closes the list it is in.
fn skip_item(tokens: &[Token], mut i: usize) -> usize {
    while punct(tokens, i, '#') {
        let open = i + 1 + usize::from(punct(tokens, i + 1, '!'));
        i = skip_group(tokens, open, '[', ']');
    }
    let mut head = i;
    if ident(tokens, head) == Some("pub") {
        head += 1;
        if punct(tokens, head, '(') {
            head = skip_group(tokens, head, '(', ')');
        }
    }
    let item = ident(tokens, head).is_some_and(|w| ITEM_KEYWORDS.contains(&w));
    let mut depth = 0;
    while i < tokens.len() {
        match &tokens[i].tok {
            Tok::Punct('(' | '[') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth == 0 => return i,
            Tok::Punct(')' | ']') => depth -= 1,
            Tok::Punct(';') if depth == 0 => return i + 1,
            Tok::Punct(',') if depth == 0 && !item => return i + 1,
            Tok::Punct('{') if depth == 0 => {
                i = skip_group(tokens, i, '{', '}');
                if item {
                    return i;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// The index of the `}` that closes the block `i` is in.
fn end_of_block(tokens: &[Token], mut i: usize) -> usize {
    let mut depth = 0;
    while i < tokens.len() {
        if punct(tokens, i, '{') {
            depth += 1;
        } else if punct(tokens, i, '}') {
            if depth == 0 {
                return i;
            }
            depth -= 1;
        }
        i += 1;
    }
    i
}

/// The first names of a `{a::b, c as d, self}` group opening at `i`, with their lines.
fn group_heads(tokens: &[Token], i: usize) -> Vec<(String, usize)> {
    let end = skip_group(tokens, i, '{', '}');
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = false;
    for token in &tokens[i..end] {
        match &token.tok {
            Tok::Punct('{') => {
                depth += 1;
                expect_head = depth == 1;
            }
            Tok::Punct('}') => depth -= 1,
            Tok::Punct(',') if depth == 1 => expect_head = true,
            Tok::Ident(name) if expect_head => {
                if name != "self" {
                    heads.push((name.clone(), token.line));
                }
                expect_head = false;
            }
            _ => expect_head = false,
        }
    }
    heads
}

/// What the top-level module path continuing at `i` (just after `crate::` or the last
/// `super::`) names: one module, or the heads of a group.
fn names_at(tokens: &[Token], i: usize) -> Vec<(String, usize)> {
    if let Some(name) = ident(tokens, i) {
        vec![(name.to_string(), tokens[i].line)]
    } else if punct(tokens, i, '{') {
        group_heads(tokens, i)
    } else {
        Vec::new()
    }
}

/// Scans one file of module `module` (`[]` for the crate root).
fn scan(source: &str, module: &[String]) -> FileScan {
    let tokens = lex(source);
    let mut out = FileScan::default();
    // Inline `mod x { ... }` blocks we are in: their names and the brace depth inside them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        if let Some((after, inner)) = cfg_test_at(&tokens, i) {
            if inner && depth == 0 {
                // `#![cfg(test)]`: the whole file is test code.
                return FileScan::default();
            }
            i = if inner {
                end_of_block(&tokens, after)
            } else {
                skip_item(&tokens, after)
            };
            continue;
        }
        let here = || {
            let mut path = module.to_vec();
            path.extend(inline.iter().map(|(name, _)| name.clone()));
            path
        };
        let after_sep = i > 0 && path_sep(&tokens, i - 1);
        match &tokens[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            Tok::Ident(word) if word == "mod" => {
                if let Some(name) = ident(&tokens, i + 1) {
                    if punct(&tokens, i + 2, ';') {
                        let mut path = here();
                        path.push(name.to_string());
                        out.children.push(path);
                    } else if punct(&tokens, i + 2, '{') {
                        inline.push((name.to_string(), depth + 1));
                    }
                }
            }
            Tok::Ident(word) if word == "crate" && !after_sep && path_sep(&tokens, i + 1) => {
                out.names.extend(names_at(&tokens, i + 2));
            }
            Tok::Ident(word) if word == "super" && !after_sep && path_sep(&tokens, i + 1) => {
                let mut ups = 1;
                let mut j = i + 2;
                while ident(&tokens, j) == Some("super") && path_sep(&tokens, j + 1) {
                    ups += 1;
                    j += 2;
                }
                // Only a climb to the crate root leaves the room.
                if ups == here().len() {
                    out.names.extend(names_at(&tokens, j));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The room graph of the source tree `read` gives (paths relative to `src/`, `lib.rs` the crate
/// root). Every room is a key, also one that imports nothing.
fn room_graph(read: &dyn Fn(&str) -> Option<String>) -> Result<Graph, String> {
    let mut graph = Graph::new();
    let mut rooms = BTreeSet::new();
    let mut files = Vec::new();
    let mut queue: VecDeque<(String, Vec<String>)> = VecDeque::from([("lib.rs".into(), vec![])]);
    while let Some((file, module)) = queue.pop_front() {
        let source = read(&file).ok_or_else(|| format!("cannot read src/{file}"))?;
        let scan = scan(&source, &module);
        for child in scan.children {
            if module.is_empty() {
                rooms.insert(child[0].clone());
            }
            let dir = child.join("/");
            let file = [format!("{dir}.rs"), format!("{dir}/mod.rs")]
                .into_iter()
                .find(|f| read(f).is_some())
                .ok_or_else(|| {
                    format!(
                        "module {} has no file {dir}.rs or {dir}/mod.rs",
                        child.join("::")
                    )
                })?;
            queue.push_back((file, child));
        }
        files.push((file, module, scan.names));
    }
    for room in &rooms {
        graph.insert(room.clone(), BTreeMap::new());
    }
    for (file, module, names) in files {
        let Some(room) = module.first() else { continue };
        for (name, line) in names {
            if rooms.contains(&name) && name != *room {
                let edges = graph.entry(room.clone()).or_default();
                edges
                    .entry(name)
                    .or_default()
                    .push(format!("src/{file}:{line}"));
            }
        }
    }
    Ok(graph)
}

/// The rooms `from` imports, directly or not.
fn reach<'g>(graph: &'g Graph, from: &str) -> BTreeSet<&'g str> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from];
    while let Some(room) = todo.pop() {
        for next in graph.get(room).into_iter().flat_map(|e| e.keys()) {
            if seen.insert(next.as_str()) {
                todo.push(next);
            }
        }
    }
    seen
}

/// The shortest way from `room` back to itself through `group`, breadth first: the rooms on
/// it, starting with `room`.
fn shortest_way_back(graph: &Graph, room: &str, group: &BTreeSet<&str>) -> Option<Vec<String>> {
    let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([room]);
    while let Some(at) = queue.pop_front() {
        for next in graph[at].keys().map(String::as_str) {
            if next == room {
                let mut path = vec![at.to_string()];
                let mut step = at;
                while let Some(before) = previous.get(step) {
                    path.push(before.to_string());
                    step = before;
                }
                path.reverse();
                return Some(path);
            }
            if group.contains(next) && !previous.contains_key(next) {
                previous.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// A group of rooms that all reach each other (a strongly connected component of more than one
/// room) and one cycle through it: the shortest way from the group's first room back to it.
#[derive(Debug, PartialEq)]
struct Tangle {
    rooms: Vec<String>,
    cycle: Vec<String>,
}

/// Every tangle of the graph, once.
fn tangles(graph: &Graph) -> Vec<Tangle> {
    let reached: BTreeMap<&str, BTreeSet<&str>> = graph
        .keys()
        .map(|room| (room.as_str(), reach(graph, room)))
        .collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for room in graph.keys().map(String::as_str) {
        if done.contains(room) || !reached[room].contains(room) {
            continue;
        }
        let group: BTreeSet<&str> = reached[room]
            .iter()
            .copied()
            .filter(|other| reached[other].contains(room))
            .collect();
        if let Some(cycle) = shortest_way_back(graph, room, &group) {
            let rooms = group.iter().map(|r| r.to_string()).collect();
            found.push(Tangle { rooms, cycle });
        }
        done.extend(group);
    }
    found
}

/// The failure message: each tangle's cycle with where each of its imports is, then, when more
/// rooms are caught, every import among them.
fn describe(graph: &Graph, found: &[Tangle]) -> String {
    let mut text = String::from(
        "the rooms of src/ import each other in a cycle; a room may import only rooms below it \
         (docs/architecture.md, \"How the rooms import each other\"): move the shared item down, \
         or hand the lower room what it needs instead of letting it import the higher one\n",
    );
    let import = |text: &mut String, from: &str, to: &str| {
        let places = graph[from][to].join(", ");
        text.push_str(&format!("  {from} -> {to}: {places}\n"));
    };
    for tangle in found {
        let mut ring = tangle.cycle.clone();
        ring.push(ring[0].clone());
        text.push_str(&format!("\ncycle: {}\n", ring.join(" -> ")));
        for pair in ring.windows(2) {
            import(&mut text, &pair[0], &pair[1]);
        }
        if tangle.rooms.len() > tangle.cycle.len() {
            text.push_str(&format!(
                "all imports among the rooms that reach each other ({}):\n",
                tangle.rooms.join(", ")
            ));
            for from in &tangle.rooms {
                for to in graph[from].keys().filter(|to| tangle.rooms.contains(to)) {
                    import(&mut text, from, to);
                }
            }
        }
    }
    text
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn rooms_of_src_import_each_other_without_cycles() {
    let src = src_dir();
    let graph = room_graph(&|file| std::fs::read_to_string(src.join(file)).ok())
        .unwrap_or_else(|e| panic!("{e}"));
    // The scan must see the house, or an empty graph would pass.
    assert!(graph.len() >= 10, "only rooms {:?}", graph.keys());
    for (from, to) in [("gateway", "state"), ("state", "config")] {
        assert!(
            graph[from].contains_key(to),
            "{from} -> {to} not found; is the scan broken? {graph:#?}"
        );
    }
    let found = tangles(&graph);
    assert!(found.is_empty(), "{}", describe(&graph, &found));
}

/// A source tree in memory, paths relative to `src/`.
fn tree(files: &[(&str, &str)]) -> Graph {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    room_graph(&|file| files.get(file).cloned()).unwrap_or_else(|e| panic!("{e}"))
}

fn edges(graph: &Graph) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(from, to)| to.keys().map(move |t| format!("{from} -> {t}")))
        .collect()
}

#[test]
fn a_cycle_is_found_and_named_with_its_imports() {
    let graph = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub(crate) mod c;\n"),
        ("a.rs", "use crate::b::Thing;\n"),
        ("b/mod.rs", "mod inner;\npub struct Thing;\n"),
        (
            "b/inner.rs",
            "//! the inner room\n\npub fn f() {\n    crate::a::g()\n}\n",
        ),
        ("c.rs", "use crate::{a::{self, x}, b as bee};\n"),
    ]);
    assert_eq!(edges(&graph), ["a -> b", "b -> a", "c -> a", "c -> b"]);
    let found = tangles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].cycle, ["a", "b"]);
    assert_eq!(found[0].rooms, ["a", "b"]);
    let message = describe(&graph, &found);
    assert!(message.contains("cycle: a -> b -> a"), "{message}");
    assert!(message.contains("  a -> b: src/a.rs:1\n"), "{message}");
    assert!(
        message.contains("  b -> a: src/b/inner.rs:4\n"),
        "{message}"
    );
}

#[test]
fn a_longer_cycle_is_reported_once_by_its_shortest_way_round() {
    let graph = tree(&[
        ("lib.rs", "mod a; mod b; mod c; mod d;"),
        ("a.rs", "use crate::b;"),
        ("b.rs", "use crate::c; use crate::d;"),
        ("c.rs", "use crate::a;"),
        ("d.rs", "fn f() { crate::c::x(); }"),
    ]);
    let found = tangles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].cycle, ["a", "b", "c"]);
    assert_eq!(found[0].rooms, ["a", "b", "c", "d"]);
    let message = describe(&graph, &found);
    assert!(message.contains("cycle: a -> b -> c -> a\n"), "{message}");
    assert!(
        message.contains("reach each other (a, b, c, d):\n"),
        "{message}"
    );
    assert!(message.contains("  d -> c: src/d.rs:1\n"), "{message}");
}

#[test]
fn comments_strings_and_test_code_are_not_imports() {
    let a = r####"
        // use crate::b;
        /// [`crate::b::X`]
        /* crate::b /* nested */ crate::b */
        const A: &str = "crate::b::X \" crate::b";
        const B: &str = r#"crate::b " crate::b"#;
        const C: &[u8] = b"crate::b";
        const D: char = '"';
        const E: char = '\'';
        fn longest<'a>(x: &'a str) -> &'a str { x }
        #[cfg(test)]
        mod tests { use crate::b; }
        #[cfg(test)]
        mod fixtures;
        #[cfg(test)]
        #[allow(dead_code)]
        fn helper() { crate::b::x(); }
        #[cfg(not(test))]
        fn real() {}
        struct S {
            #[cfg(test)]
            pub probe: crate::b::Probe,
            kept: u8,
        }
        mod inline_tests {
            #![cfg(test)]
            use crate::b;
        }
        // Code after all that is still read.
        use crate::c;
    "####;
    let graph = tree(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", a),
        // Never read: it is declared under #[cfg(test)].
        ("a/fixtures.rs", "use crate::b;"),
        ("b.rs", "use crate::a::X;"),
        ("c.rs", ""),
    ]);
    assert_eq!(edges(&graph), ["a -> c", "b -> a"]);
    assert!(tangles(&graph).is_empty());
}

#[test]
fn super_paths_count_when_they_climb_out_of_the_room() {
    let graph = tree(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        // From the room's own file, `super` is the crate root.
        (
            "a.rs",
            "use super::b::X;\nmod inline { use super::super::c; use super::Y; }",
        ),
        ("b/mod.rs", "mod deep;"),
        ("b/deep.rs", "use super::super::a;\nuse super::sibling;"),
        ("c.rs", "fn f() { let x = 1; }"),
    ]);
    assert_eq!(edges(&graph), ["a -> b", "a -> c", "b -> a"]);
    assert_eq!(tangles(&graph)[0].cycle, ["a", "b"]);
}

#[test]
fn a_missing_module_file_is_an_error_not_a_pass() {
    let files = BTreeMap::from([("lib.rs".to_string(), "mod gone;".to_string())]);
    let result = room_graph(&|file| files.get(file).cloned());
    assert_eq!(
        result.err().as_deref(),
        Some("module gone has no file gone.rs or gone/mod.rs")
    );
}
