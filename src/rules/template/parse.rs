//! The parser of Go's `text/template` (a port of `text/template/parse/parse.go` and
//! `node.go`): tokens from [`super::lex`] become a tree per template name (`define` and
//! `block` add more trees). It checks what Go checks at parse time: known functions, declared
//! variables, `break`/`continue` inside `range`, pipeline shape. It does not evaluate anything.

use std::collections::BTreeMap;
use std::fmt;

use super::lex::{lex, Item, ItemType};

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

/// A number literal with every Go type it can be read as.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Number {
    pub text: String,
    pub int: Option<i64>,
    pub uint: Option<u64>,
    pub float: Option<f64>,
}

/// An operand of a command.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg {
    /// `.A.B`
    Field {
        pos: usize,
        ident: Vec<String>,
    },
    /// `$x.A.B` (ident[0] is the variable)
    Variable {
        pos: usize,
        ident: Vec<String>,
    },
    /// A function name.
    Identifier {
        pos: usize,
        name: String,
    },
    /// `(pipeline).A.B` or another term followed by fields.
    Chain {
        pos: usize,
        node: Box<Arg>,
        field: Vec<String>,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        value: bool,
    },
    Number {
        pos: usize,
        number: Number,
    },
    String {
        pos: usize,
        quoted: String,
        text: String,
    },
    Pipe(Box<Pipe>),
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::String { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl fmt::Display for Arg {
    /// The text Go's `Node.String()` gives, which error messages quote.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { ident, .. } => {
                for i in ident {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Variable { ident, .. } => write!(f, "{}", ident.join(".")),
            Arg::Identifier { name, .. } => write!(f, "{name}"),
            Arg::Chain { node, field, .. } => {
                if let Arg::Pipe(_) = **node {
                    write!(f, "({node})")?;
                } else {
                    write!(f, "{node}")?;
                }
                for i in field {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Dot { .. } => write!(f, "."),
            Arg::Nil { .. } => write!(f, "nil"),
            Arg::Bool { value, .. } => write!(f, "{value}"),
            Arg::Number { number, .. } => write!(f, "{}", number.text),
            Arg::String { quoted, .. } => write!(f, "{quoted}"),
            Arg::Pipe(p) => write!(f, "{p}"),
        }
    }
}

/// `operand (space operand)*`
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            if let Arg::Pipe(_) = a {
                write!(f, "({a})")?;
            } else {
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

/// `declarations? command ('|' command)*`
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pipe {
    pub pos: usize,
    pub is_assign: bool,
    /// Declared or assigned variable names (with `$`).
    pub decl: Vec<String>,
    pub cmds: Vec<Command>,
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            write!(f, "{}", self.decl.join(", "))?;
            write!(f, "{}", if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                write!(f, " | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A node of a template body.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Text {
        text: String,
    },
    Action {
        pos: usize,
        pipe: Pipe,
    },
    If(Branch),
    Range(Branch),
    With(Branch),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break {
        pos: usize,
    },
    Continue {
        pos: usize,
    },
}

/// The common shape of `if`, `range` and `with`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Branch {
    pub pos: usize,
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

fn write_list(f: &mut fmt::Formatter<'_>, list: &[Node]) -> fmt::Result {
    for n in list {
        write!(f, "{n}")?;
    }
    Ok(())
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let branch = |f: &mut fmt::Formatter<'_>, kw: &str, b: &Branch| -> fmt::Result {
            write!(f, "{{{{{kw} {}}}}}", b.pipe)?;
            write_list(f, &b.list)?;
            if let Some(e) = &b.else_list {
                write!(f, "{{{{else}}}}")?;
                write_list(f, e)?;
            }
            write!(f, "{{{{end}}}}")
        };
        match self {
            Node::Text { text } => write!(f, "{text}"),
            Node::Action { pipe, .. } => write!(f, "{{{{{pipe}}}}}"),
            Node::If(b) => branch(f, "if", b),
            Node::Range(b) => branch(f, "range", b),
            Node::With(b) => branch(f, "with", b),
            Node::Template { name, pipe, .. } => match pipe {
                None => write!(f, "{{{{template {}}}}}", super::fmt::quote(name, false)),
                Some(p) => write!(f, "{{{{template {} {p}}}}}", super::fmt::quote(name, false)),
            },
            Node::Break { .. } => write!(f, "{{{{break}}}}"),
            Node::Continue { .. } => write!(f, "{{{{continue}}}}"),
        }
    }
}

/// How deeply blocks and parenthesized pipelines may nest.
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

    fn pipeline(&mut self, context: &str, end: ItemType) -> PResult<Pipe> {
        let token = self.peek_non_space();
        let mut pipe = Pipe {
            pos: token.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations or assignments?
        loop {
            let v = self.peek_non_space();
            if v.typ != ItemType::Variable {
                break;
            }
            let save = self.next;
            self.next_non_space();
            let next = self.peek_non_space();
            if next.typ == ItemType::Assign || next.typ == ItemType::Declare {
                pipe.is_assign = next.typ == ItemType::Assign;
                self.next_non_space();
                pipe.decl.push(v.val.clone());
                self.vars.push(v.val);
                break;
            } else if next.typ == ItemType::Char && next.val == "," {
                self.next_non_space();
                pipe.decl.push(v.val.clone());
                self.vars.push(v.val);
                if context == "range" && pipe.decl.len() < 2 {
                    match self.peek_non_space().typ {
                        ItemType::Variable | ItemType::RightDelim | ItemType::RightParen => {
                            continue
                        }
                        _ => return self.errorf("range can only initialize variables".into()),
                    }
                }
                return self.errorf(format!("too many declarations in {context}"));
            } else {
                self.next = save;
                break;
            }
        }
        loop {
            let token = self.next_non_space();
            match token.typ {
                t if t == end => {
                    self.check_pipeline(&pipe, context)?;
                    return Ok(pipe);
                }
                ItemType::Bool
                | ItemType::CharConstant
                | ItemType::Complex
                | ItemType::Dot
                | ItemType::Field
                | ItemType::Identifier
                | ItemType::Number
                | ItemType::Nil
                | ItemType::RawString
                | ItemType::String
                | ItemType::Variable
                | ItemType::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&token, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return self.errorf(format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(
                    Arg::Bool { .. }
                        | Arg::Dot { .. }
                        | Arg::Nil { .. }
                        | Arg::Number { .. }
                        | Arg::String { .. }
                )
            ) {
                return self.errorf(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Command> {
        let mut cmd = Command {
            pos: self.peek_non_space().pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                cmd.args.push(operand);
            }
            let token = self.next();
            match token.typ {
                ItemType::Space => continue,
                ItemType::RightDelim | ItemType::RightParen => self.backup(),
                ItemType::Pipe => {}
                _ => return self.unexpected(&token, "operand"),
            }
            break;
        }
        if cmd.args.is_empty() {
            return self.errorf("empty command".into());
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ != ItemType::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().typ == ItemType::Field {
            let f = self.next();
            fields.push(f.val[1..].to_string());
        }
        Ok(Some(match node {
            Arg::Field { ident, .. } => {
                let mut ident = ident;
                ident.extend(fields);
                Arg::Field { pos, ident }
            }
            Arg::Variable { ident, .. } => {
                let mut ident = ident;
                ident.extend(fields);
                Arg::Variable { pos, ident }
            }
            Arg::Bool { .. }
            | Arg::String { .. }
            | Arg::Number { .. }
            | Arg::Nil { .. }
            | Arg::Dot { .. } => {
                let shown = node.to_string();
                return self.errorf(format!(
                    "unexpected . after term {}",
                    super::fmt::quote(&shown, false)
                ));
            }
            other => Arg::Chain {
                pos,
                node: Box::new(other),
                field: fields,
            },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let token = self.next_non_space();
        let pos = token.pos;
        Ok(Some(match token.typ {
            ItemType::Identifier => {
                if !(self.has_function)(&token.val) {
                    return self.errorf(format!(
                        "function {} not defined",
                        super::fmt::quote(&token.val, false)
                    ));
                }
                Arg::Identifier {
                    pos,
                    name: token.val,
                }
            }
            ItemType::Dot => Arg::Dot { pos },
            ItemType::Nil => Arg::Nil { pos },
            ItemType::Variable => {
                let ident: Vec<String> = token.val.split('.').map(str::to_string).collect();
                if !self.vars.iter().any(|v| *v == ident[0]) {
                    return self.errorf(format!(
                        "undefined variable {}",
                        super::fmt::quote(&ident[0], false)
                    ));
                }
                Arg::Variable { pos, ident }
            }
            ItemType::Field => Arg::Field {
                pos,
                ident: vec![token.val[1..].to_string()],
            },
            ItemType::Bool => Arg::Bool {
                pos,
                value: token.val == "true",
            },
            ItemType::CharConstant | ItemType::Number => {
                match parse_number(&token.val, token.typ) {
                    Ok(number) => Arg::Number { pos, number },
                    Err(e) => return self.errorf(e),
                }
            }
            ItemType::Complex => {
                return self.errorf(format!(
                    "complex constants are not supported: {}",
                    token.val
                ))
            }
            ItemType::LeftParen => {
                self.enter()?;
                let pipe = self.pipeline("parenthesized pipeline", ItemType::RightParen);
                self.depth -= 1;
                Arg::Pipe(Box::new(pipe?))
            }
            ItemType::String | ItemType::RawString => {
                let text = self.unquote(&token)?;
                Arg::String {
                    pos,
                    quoted: token.val,
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// Go's `strconv.Unquote` for the three literal forms the lexer produces.
pub(crate) fn unquote(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    if b.len() < 2 {
        return Err(());
    }
    let (q, last) = (b[0], b[b.len() - 1]);
    if q != last {
        return Err(());
    }
    let inner = &s[1..s.len() - 1];
    match q {
        b'`' => {
            if inner.contains('`') {
                return Err(());
            }
            Ok(inner.replace('\r', ""))
        }
        b'"' | b'\'' => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == q as char || c == '\n' {
                    return Err(());
                }
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let e = chars.next().ok_or(())?;
                match e {
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '\'' if q == b'\'' => out.push('\''),
                    '"' if q == b'"' => out.push('"'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|_| chars.next()).collect();
                        if hex.len() != n {
                            return Err(());
                        }
                        let v = u32::from_str_radix(&hex, 16).map_err(|_| ())?;
                        if e == 'x' {
                            // A byte; only valid UTF-8 results are representable here.
                            if v < 0x80 {
                                out.push(v as u8 as char);
                            } else {
                                return Err(());
                            }
                        } else {
                            out.push(char::from_u32(v).ok_or(())?);
                        }
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).ok_or(())?;
                        for _ in 0..2 {
                            let d = chars.next().and_then(|c| c.to_digit(8)).ok_or(())?;
                            v = v * 8 + d;
                        }
                        if v > 255 {
                            return Err(());
                        }
                        if v < 0x80 {
                            out.push(v as u8 as char);
                        } else {
                            return Err(());
                        }
                    }
                    _ => return Err(()),
                }
            }
            if q == b'\'' && out.chars().count() != 1 {
                return Err(());
            }
            Ok(out)
        }
        _ => Err(()),
    }
}

/// Go's `strconv.ParseInt(text, 0, 64)`/`ParseUint`: an optional sign, then a base prefix
/// (`0x`, `0o`, `0b`, or a leading `0` for octal) and digits with optional underscores.
fn parse_go_int(text: &str) -> Option<(bool, u64)> {
    let (neg, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = rest.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    if digits.contains('_') && !underscore_ok(text) {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    u64::from_str_radix(&clean, radix).ok().map(|u| (neg, u))
}

/// Go's `parse.newNumber` minus complex numbers: which of int, uint, float the literal is.
pub(crate) fn parse_number(text: &str, typ: ItemType) -> Result<Number, String> {
    let mut n = Number {
        text: text.to_string(),
        int: None,
        uint: None,
        float: None,
    };
    if typ == ItemType::CharConstant {
        let s = unquote(text).map_err(|_| format!("malformed character constant: {text}"))?;
        let mut cs = s.chars();
        let (Some(c), None) = (cs.next(), cs.next()) else {
            return Err(format!("malformed character constant: {text}"));
        };
        n.int = Some(c as i64);
        n.uint = Some(c as u64);
        n.float = Some(c as u32 as f64);
        return Ok(n);
    }
    if text.ends_with('i') {
        return Err(format!("complex constants are not supported: {text}"));
    }
    if let Some((neg, u)) = parse_go_int(text) {
        if !neg {
            n.uint = Some(u);
            if u <= i64::MAX as u64 {
                n.int = Some(u as i64);
            }
        } else if u <= i64::MAX as u64 + 1 {
            n.int = Some((u as i128).wrapping_neg() as i64);
            if u == 0 {
                n.uint = Some(0);
            }
        }
    }
    if let Some(i) = n.int {
        n.float = Some(i as f64);
    } else if let Some(u) = n.uint {
        n.float = Some(u as f64);
    } else {
        let lower = text.to_ascii_lowercase();
        let f = if lower.starts_with("0x") || lower.starts_with("+0x") || lower.starts_with("-0x") {
            parse_hex_float(&lower)
        } else if text.contains('_') && !underscore_ok(text) {
            None
        } else {
            text.replace('_', "")
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
        };
        if let Some(f) = f {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(format!(
                    "integer overflow: {}",
                    super::fmt::quote(text, false)
                ));
            }
            n.float = Some(f);
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
                n.int = Some(f as i64);
            }
            if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 {
                n.uint = Some(f as u64);
            }
        }
    }
    if n.int.is_none() && n.uint.is_none() && n.float.is_none() {
        return Err(format!(
            "illegal number syntax: {}",
            super::fmt::quote(text, false)
        ));
    }
    Ok(n)
}

/// Go's `strconv.underscoreOK`: underscores only between digits, or between a base prefix
/// and a digit.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let b = match b.first() {
        Some(b'-' | b'+') => &b[1..],
        _ => b,
    };
    // '^' start, '0' digit or base prefix, '_' underscore, '!' anything else.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// A hexadecimal float such as `0x1.8p3`.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let s = s.strip_prefix("0x")?;
    let (mant, exp) = s.split_once('p')?;
    let exp: i32 = exp.replace('_', "").parse().ok()?;
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    let mut v = 0f64;
    for c in ip.chars().filter(|c| *c != '_') {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in fp.chars().filter(|c| *c != '_') {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp);
    Some(if neg { -v } else { v })
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
