//! The parser of Go's `text/template` (a port of `text/template/parse/parse.go` and
//! `node.go`): tokens from [`super::lex`] become a tree per template name (`define` and
//! `block` add more trees). It checks what Go checks at parse time: known functions, declared
//! variables, `break`/`continue` inside `range`, pipeline shape. It does not evaluate anything.
//!
//! The tree's node types are in `node`, pipelines and their operands in `pipeline`, and Go's
//! literal syntax (quoted strings, numbers) in `literal`.

mod literal;
mod node;
mod pipeline;

use std::collections::BTreeMap;

use super::lex::{lex, Item, ItemType};

#[cfg(test)]
use literal::parse_number;
pub(crate) use literal::unquote;
pub(crate) use node::{Arg, Branch, Command, Node, Number, Pipe};

/// A parse failure, with Go's message and where it happened.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ParseError {
    /// Go's text after `template: NAME:LINE: `.
    pub message: String,
    /// Line (1-based) Go reports.
    pub line: usize,
    /// Byte offset of the offending token in the input.
    pub offset: usize,
}

const MAX_NESTING: usize = 100;

/// Where an `{{else}}` or `{{end}}` closed a list.
enum ListEnd {
    End,
    Else,
}

/// The trees of one parsed text: the main template (under its name) and every `define`/`block`.
pub(crate) type TreeSet = BTreeMap<String, Vec<Node>>;

/// Parses `text` as template `name`. `has_function` says which function names exist.
pub(crate) fn parse(
    name: &str,
    text: &str,
    has_function: &dyn Fn(&str) -> bool,
) -> Result<TreeSet, ParseError> {
    let mut p = Parser {
        items: lex(text),
        next: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        has_function,
        depth: 0,
        action_line: 0,
        name,
        last_line: 1,
        last_pos: 0,
        tree_set: BTreeMap::new(),
    };
    let root = p.parse_top()?;
    p.add(name, root)?;
    Ok(p.tree_set)
}

struct Parser<'f> {
    items: Vec<Item>,
    next: usize,
    vars: Vec<String>,
    range_depth: usize,
    has_function: &'f dyn Fn(&str) -> bool,
    /// Current nesting of blocks and parenthesized pipelines.
    depth: usize,
    /// Line of the `{{` of the action being parsed (0 outside actions).
    action_line: usize,
    /// The template's name, for messages.
    name: &'f str,
    /// Line and offset of the most recently consumed token, for error messages (Go reports the
    /// line of `token[0]`).
    last_line: usize,
    last_pos: usize,
    tree_set: TreeSet,
}

type PResult<T> = Result<T, ParseError>;

/// Whether a tree holds nothing but space (Go's `IsEmptyTree`).
fn is_empty_tree(list: &[Node]) -> bool {
    list.iter()
        .all(|n| matches!(n, Node::Text { text } if text.trim().is_empty()))
}

impl<'f> Parser<'f> {
    fn next(&mut self) -> Item {
        let i = self
            .items
            .get(self.next)
            .or_else(|| self.items.last())
            .cloned()
            .unwrap_or(Item {
                typ: ItemType::Eof,
                pos: 0,
                val: String::new(),
                line: 1,
            });
        if self.next < self.items.len() {
            self.next += 1;
        }
        self.last_line = i.line;
        self.last_pos = i.pos;
        i
    }

    fn backup(&mut self) {
        if self.next > 0 {
            self.next -= 1;
        }
    }

    fn peek(&mut self) -> Item {
        let i = self.next();
        self.backup();
        i
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let i = self.next();
            if i.typ != ItemType::Space {
                return i;
            }
        }
    }

    /// Like Go: the spaces before the token are consumed, the token itself is not.
    fn peek_non_space(&mut self) -> Item {
        let i = self.next_non_space();
        self.backup();
        i
    }

    fn errorf<T>(&self, message: String) -> PResult<T> {
        Err(ParseError {
            message,
            line: self.last_line,
            offset: self.last_pos,
        })
    }

    fn unexpected<T>(&self, token: &Item, context: &str) -> PResult<T> {
        if token.typ == ItemType::Error {
            // Go names the line an unfinished action started on, if it is another one.
            let mut message = token.val.clone();
            if self.action_line != 0 && self.action_line != token.line {
                let sep = if message.ends_with(" action") {
                    ""
                } else {
                    " in action"
                };
                message.push_str(&format!(
                    "{sep} started at {}:{}",
                    self.name, self.action_line
                ));
            }
            return Err(ParseError {
                message,
                line: token.line,
                offset: token.pos,
            });
        }
        Err(ParseError {
            message: format!("unexpected {token} in {context}"),
            line: token.line,
            offset: token.pos,
        })
    }

    fn expect(&mut self, expected: ItemType, context: &str) -> PResult<Item> {
        let token = self.next_non_space();
        if token.typ != expected {
            return self.unexpected(&token, context);
        }
        Ok(token)
    }

    fn add(&mut self, name: &str, root: Vec<Node>) -> PResult<()> {
        match self.tree_set.get(name) {
            Some(existing) if !is_empty_tree(existing) => {
                if !is_empty_tree(&root) {
                    return self.errorf(format!(
                        "template: multiple definition of template {}",
                        super::fmt::quote(name, false)
                    ));
                }
            }
            _ => {
                self.tree_set.insert(name.to_string(), root);
            }
        }
        Ok(())
    }

    fn parse_top(&mut self) -> PResult<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().typ != ItemType::Eof {
            if self.peek().typ == ItemType::LeftDelim {
                let save = self.next;
                self.next();
                if self.next_non_space().typ == ItemType::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.next = save;
            }
            match self.text_or_action()? {
                Ok(n) => root.push(n),
                Err((end, _)) => {
                    let what = match end {
                        ListEnd::End => "{{end}}",
                        ListEnd::Else => "{{else}}",
                    };
                    return self.errorf(format!("unexpected {what}"));
                }
            }
        }
        Ok(root)
    }

    /// `{{define "name"}} ... {{end}}`; the keyword is past.
    fn parse_definition(&mut self) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let token = self.next_non_space();
        if token.typ != ItemType::String && token.typ != ItemType::RawString {
            return self.unexpected(&token, CONTEXT);
        }
        let name = self.unquote(&token)?;
        self.expect(ItemType::RightDelim, CONTEXT)?;
        // A definition has its own variable scope.
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        if !matches!(end, ListEnd::End) {
            return self.errorf(format!("unexpected {{{{else}}}} in {CONTEXT}"));
        }
        self.add(&name, list)
    }

    /// `textOrAction*` up to `{{end}}` or `{{else}}`.
    fn item_list(&mut self) -> PResult<(Vec<Node>, ListEnd)> {
        let mut list = Vec::new();
        while self.peek_non_space().typ != ItemType::Eof {
            match self.text_or_action()? {
                Ok(n) => list.push(n),
                Err((end, _)) => return Ok((list, end)),
            }
        }
        self.errorf("unexpected EOF".into())
    }

    /// A node, or the `{{end}}`/`{{else}}` that closes the enclosing list (with its position).
    fn text_or_action(&mut self) -> PResult<Result<Node, (ListEnd, usize)>> {
        let token = self.next_non_space();
        match token.typ {
            ItemType::Text => Ok(Ok(Node::Text { text: token.val })),
            ItemType::LeftDelim => {
                let saved = std::mem::replace(&mut self.action_line, token.line);
                let r = self.action();
                self.action_line = saved;
                r
            }
            _ => self.unexpected(&token, "input"),
        }
    }

    fn action(&mut self) -> PResult<Result<Node, (ListEnd, usize)>> {
        let token = self.next_non_space();
        match token.typ {
            ItemType::Block => return self.block_control().map(Ok),
            ItemType::Break | ItemType::Continue => {
                let what = if token.typ == ItemType::Break {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let t = self.next_non_space();
                if t.typ != ItemType::RightDelim {
                    return self.unexpected(&t, what);
                }
                if self.range_depth == 0 {
                    return self.errorf(format!("{what} outside {{{{range}}}}"));
                }
                return Ok(Ok(if token.typ == ItemType::Break {
                    Node::Break { pos: token.pos }
                } else {
                    Node::Continue { pos: token.pos }
                }));
            }
            ItemType::Else => {
                // "{{else if ...}}" / "{{else with ...}}" leave the keyword pending.
                let peek = self.peek_non_space();
                if peek.typ == ItemType::If || peek.typ == ItemType::With {
                    return Ok(Err((ListEnd::Else, peek.pos)));
                }
                let t = self.expect(ItemType::RightDelim, "else")?;
                return Ok(Err((ListEnd::Else, t.pos)));
            }
            ItemType::End => {
                let t = self.expect(ItemType::RightDelim, "end")?;
                return Ok(Err((ListEnd::End, t.pos)));
            }
            ItemType::If => return self.control("if").map(|b| Ok(Node::If(b))),
            ItemType::Range => return self.control("range").map(|b| Ok(Node::Range(b))),
            ItemType::With => return self.control("with").map(|b| Ok(Node::With(b))),
            ItemType::Template => return self.template_control().map(Ok),
            _ => {}
        }
        self.backup();
        let token = self.peek();
        // Variables declared here persist until the enclosing {{end}}.
        let pipe = self.pipeline("command", ItemType::RightDelim)?;
        Ok(Ok(Node::Action {
            pos: token.pos,
            pipe,
        }))
    }

    fn control(&mut self, context: &str) -> PResult<Branch> {
        self.enter()?;
        let vars_mark = self.vars.len();
        let result = self.control_inner(context);
        self.vars.truncate(vars_mark);
        self.depth -= 1;
        result
    }

    /// Bounds the nesting of blocks and parentheses, so a hostile template cannot exhaust the
    /// stack (Go bounds parentheses at 10000 on its growable stacks).
    fn enter(&mut self) -> PResult<()> {
        if self.depth >= MAX_NESTING {
            return self.errorf("max expression depth exceeded".into());
        }
        self.depth += 1;
        Ok(())
    }

    fn control_inner(&mut self, context: &str) -> PResult<Branch> {
        let pipe = self.pipeline(context, ItemType::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let mut else_list = None;
        if let ListEnd::Else = end {
            let peek = self.peek();
            if context == "if" && peek.typ == ItemType::If {
                self.next();
                else_list = Some(vec![Node::If(self.control("if")?)]);
            } else if context == "with" && peek.typ == ItemType::With {
                self.next();
                else_list = Some(vec![Node::With(self.control("with")?)]);
            } else {
                let (l, end2) = self.item_list()?;
                if !matches!(end2, ListEnd::End) {
                    return self.errorf("expected end; found {{else}}".into());
                }
                else_list = Some(l);
            }
        }
        Ok(Branch {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn unquote(&self, token: &Item) -> PResult<String> {
        unquote(&token.val).map_err(|_| ParseError {
            message: "invalid syntax".into(),
            line: token.line,
            offset: token.pos,
        })
    }

    fn template_name(&mut self, token: &Item, context: &str) -> PResult<String> {
        match token.typ {
            ItemType::String | ItemType::RawString => self.unquote(token),
            _ => self.unexpected(token, context),
        }
    }

    fn block_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "block clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, ItemType::RightDelim)?;
        self.enter()?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let r = self.item_list();
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        self.depth -= 1;
        let (list, end) = r?;
        if !matches!(end, ListEnd::End) {
            return self.errorf(format!("unexpected {{{{else}}}} in {CONTEXT}"));
        }
        self.add(&name, list)?;
        Ok(Node::Template {
            pos: token.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn template_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "template clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, CONTEXT)?;
        let mut pipe = None;
        if self.next_non_space().typ != ItemType::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(CONTEXT, ItemType::RightDelim)?);
        }
        Ok(Node::Template {
            pos: token.pos,
            name,
            pipe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<TreeSet, ParseError> {
        parse("t", text, &|name: &str| {
            matches!(name, "printf" | "len" | "eq")
        })
    }

    fn round_trip(text: &str) -> String {
        let set = p(text).unwrap_or_else(|e| panic!("{text}: {}", e.message));
        set["t"].iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn node_strings_match_go() {
        assert_eq!(round_trip("{{.A.B}}"), "{{.A.B}}");
        assert_eq!(round_trip("{{$x := 1}}{{$x}}"), "{{$x := 1}}{{$x}}");
        assert_eq!(
            round_trip("{{ printf \"%d\" (len .) | printf }}"),
            "{{printf \"%d\" (len .) | printf}}"
        );
        assert_eq!(
            round_trip("{{if .}}a{{else if .B}}b{{end}}"),
            "{{if .}}a{{else}}{{if .B}}b{{end}}{{end}}"
        );
        assert_eq!(
            round_trip("{{range $i, $e := .}}{{$e}}{{end}}"),
            "{{range $i, $e := .}}{{$e}}{{end}}"
        );
        assert_eq!(round_trip("{{(len .).X}}"), "{{(len .).X}}");
    }

    #[test]
    fn defines_go_to_their_own_tree() {
        let set = p("{{define \"x\"}}X{{end}}main").unwrap_or_default();
        assert_eq!(set.len(), 2);
        assert_eq!(set["x"], vec![Node::Text { text: "X".into() }]);
    }

    #[test]
    fn parse_errors_match_go() {
        let err = |t: &str| p(t).err().map(|e| (e.line, e.message));
        assert_eq!(err("{{"), Some((1, "unclosed action".into())));
        assert_eq!(
            err("{{foo}}"),
            Some((1, "function \"foo\" not defined".into()))
        );
        assert_eq!(
            err("a\n{{$x}}"),
            Some((2, "undefined variable \"$x\"".into()))
        );
        assert_eq!(err("{{if .}}"), Some((1, "unexpected EOF".into())));
        assert_eq!(err("{{end}}"), Some((1, "unexpected {{end}}".into())));
        assert_eq!(
            err("{{break}}"),
            Some((1, "{{break}} outside {{range}}".into()))
        );
        assert_eq!(
            err("{{if .}}{{$y := 1}}{{end}}{{$y}}"),
            Some((1, "undefined variable \"$y\"".into()))
        );
        assert_eq!(
            err("{{. | 1}}"),
            Some((1, "non executable command in pipeline stage 2".into()))
        );
        assert_eq!(
            err("{{1.X}}"),
            Some((1, "bad number syntax: \"1.X\"".into()))
        );
        assert_eq!(
            err("{{\"a\".X}}"),
            Some((1, "unexpected . after term \"\\\"a\\\"\"".into()))
        );
        assert_eq!(err("{{ }}"), Some((1, "missing value for command".into())));
        assert_eq!(
            err("{{define \"a\"}}x{{end}}{{define \"a\"}}y{{end}}"),
            Some((1, "template: multiple definition of template \"a\"".into()))
        );
    }

    #[test]
    fn numbers_take_every_type_they_fit() {
        let n = parse_number("0x1F", ItemType::Number).ok();
        assert_eq!(n.map(|n| (n.int, n.float)), Some((Some(31), Some(31.0))));
        let n = parse_number("1.5", ItemType::Number).ok();
        assert_eq!(n.map(|n| (n.int, n.float)), Some((None, Some(1.5))));
        let n = parse_number("1e3", ItemType::Number).ok();
        assert_eq!(
            n.map(|n| (n.int, n.float)),
            Some((Some(1000), Some(1000.0)))
        );
        let n = parse_number("'a'", ItemType::CharConstant).ok();
        assert_eq!(n.map(|n| n.int), Some(Some(97)));
        assert!(parse_number("99999999999999999999", ItemType::Number).is_err());
    }

    #[test]
    fn unquote_handles_go_escapes() {
        assert_eq!(
            unquote(r#""a\tb\x41\u00e9\101""#),
            Ok("a\tbAéA".to_string())
        );
        assert_eq!(unquote("`raw\\n`"), Ok("raw\\n".to_string()));
        assert!(unquote(r#""\q""#).is_err());
    }
}
