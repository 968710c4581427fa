//! The lexer of Go's `text/template` (a port of `text/template/parse/lex.go`): it splits a
//! template into text, delimiters and the tokens inside actions, trims spaces around `{{- ` and
//! ` -}}`, and drops comments. It knows nothing of the parse tree.
//!
//! Positions are byte offsets into the whole input and lines are 1-based, as in Go, because the
//! error messages Prometheus users see quote them.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ItemType {
    /// A lexing error; `val` holds its message.
    Error,
    Bool,
    /// Printable ASCII character not otherwise classified (`,` `=` ...).
    Char,
    CharConstant,
    Complex,
    /// `=`
    Assign,
    /// `:=`
    Declare,
    Eof,
    /// `.Name`
    Field,
    /// A function name.
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    String,
    Text,
    /// `$` or `$name`
    Variable,
    // Keywords.
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl ItemType {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            ItemType::Block
                | ItemType::Break
                | ItemType::Continue
                | ItemType::Dot
                | ItemType::Define
                | ItemType::Else
                | ItemType::End
                | ItemType::If
                | ItemType::Nil
                | ItemType::Range
                | ItemType::Template
                | ItemType::With
        )
    }
}

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub typ: ItemType,
    /// Byte offset of the token's start in the input.
    pub pos: usize,
    pub val: String,
    /// Line (1-based) where the token starts.
    pub line: usize,
}

impl std::fmt::Display for Item {
    /// How Go's `item.String()` shows a token in "unexpected ..." messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.typ {
            ItemType::Eof => write!(f, "EOF"),
            ItemType::Error => write!(f, "{}", self.val),
            t if t.is_keyword() => write!(f, "<{}>", self.val),
            _ => {
                if self.val.chars().count() > 10 {
                    // Go: %.10q... quotes the first ten runes.
                    let short: String = self.val.chars().take(10).collect();
                    write!(f, "{}...", super::fmt::quote(&short, false))
                } else {
                    write!(f, "{}", super::fmt::quote(&self.val, false))
                }
            }
        }
    }
}

const LEFT_DELIM: &str = "{{";
const RIGHT_DELIM: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";
/// The trim marker plus the one space that must sit beside it.
const TRIM_MARKER_LEN: usize = 2;

fn is_space(r: char) -> bool {
    matches!(r, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(r: char) -> bool {
    r == '_' || r.is_alphabetic() || r.is_numeric()
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

fn right_trim_length(s: &str) -> usize {
    s.len() - s.trim_end_matches([' ', '\t', '\r', '\n']).len()
}

fn left_trim_length(s: &str) -> usize {
    s.len() - s.trim_start_matches([' ', '\t', '\r', '\n']).len()
}

enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    at_eof: bool,
    paren_depth: i32,
    line: usize,
    start_line: usize,
    inside_action: bool,
    items: Vec<Item>,
}

/// Splits `input` into tokens. The list always ends with an `Eof` or an `Error` item.
pub(crate) fn lex(input: &str) -> Vec<Item> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        at_eof: false,
        paren_depth: 0,
        line: 1,
        start_line: 1,
        inside_action: false,
        items: Vec::new(),
    };
    let mut state = Some(State::Text);
    while let Some(s) = state {
        state = l.step(s);
        if let Some(last) = l.items.last() {
            if matches!(last.typ, ItemType::Eof | ItemType::Error) {
                break;
            }
        }
    }
    l.items
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn next(&mut self) -> Option<char> {
        match self.rest().chars().next() {
            None => {
                self.at_eof = true;
                None
            }
            Some(r) => {
                self.pos += r.len_utf8();
                if r == '\n' {
                    self.line += 1;
                }
                Some(r)
            }
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.rest().chars().next()
    }

    fn backup(&mut self) {
        if !self.at_eof && self.pos > 0 {
            if let Some(r) = self.input[..self.pos].chars().next_back() {
                self.pos -= r.len_utf8();
                if r == '\n' {
                    self.line -= 1;
                }
            }
        }
    }

    fn this_item(&mut self, t: ItemType) -> Item {
        let i = Item {
            typ: t,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
            line: self.start_line,
        };
        self.start = self.pos;
        self.start_line = self.line;
        i
    }

    fn emit(&mut self, t: ItemType) {
        let i = self.this_item(t);
        self.items.push(i);
    }

    fn ignore(&mut self) {
        self.line += self.input[self.start..self.pos].matches('\n').count();
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(r) if valid.contains(r) => true,
            Some(_) => {
                self.backup();
                false
            }
            None => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while let Some(r) = self.next() {
            if !valid.contains(r) {
                self.backup();
                return;
            }
        }
    }

    fn errorf(&mut self, msg: String) -> Option<State> {
        self.items.push(Item {
            typ: ItemType::Error,
            pos: self.start,
            val: msg,
            line: self.start_line,
        });
        None
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if has_right_trim_marker(rest) && rest[TRIM_MARKER_LEN..].starts_with(RIGHT_DELIM) {
            return (true, true);
        }
        (rest.starts_with(RIGHT_DELIM), false)
    }

    fn at_terminator(&mut self) -> bool {
        match self.peek() {
            None => true,
            Some(r) if is_space(r) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            Some(_) => self.rest().starts_with(RIGHT_DELIM),
        }
    }

    fn step(&mut self, s: State) -> Option<State> {
        match s {
            State::Text => self.lex_text(),
            State::LeftDelim => self.lex_left_delim(),
            State::Comment => self.lex_comment(),
            State::RightDelim => self.lex_right_delim(),
            State::InsideAction => self.lex_inside_action(),
            State::Space => self.lex_space(),
            State::Identifier => self.lex_identifier(),
            State::Field => self.lex_field_or_variable(ItemType::Field),
            State::Variable => {
                if self.at_terminator() {
                    self.emit(ItemType::Variable);
                    return Some(State::InsideAction);
                }
                self.lex_field_or_variable(ItemType::Variable)
            }
            State::Char => self.lex_quoted(
                '\'',
                ItemType::CharConstant,
                "unterminated character constant",
            ),
            State::Number => self.lex_number(),
            State::Quote => self.lex_quoted('"', ItemType::String, "unterminated quoted string"),
            State::RawQuote => self.lex_raw_quote(),
        }
    }

    fn lex_text(&mut self) -> Option<State> {
        if let Some(x) = self.rest().find(LEFT_DELIM) {
            if x > 0 {
                self.pos += x;
                let delim_end = self.pos + LEFT_DELIM.len();
                let mut trim = 0;
                if has_left_trim_marker(&self.input[delim_end..]) {
                    trim = right_trim_length(&self.input[self.start..self.pos]);
                }
                self.pos -= trim;
                self.line += self.input[self.start..self.pos].matches('\n').count();
                let i = self.this_item(ItemType::Text);
                self.pos += trim;
                self.ignore();
                if !i.val.is_empty() {
                    self.items.push(i);
                }
            }
            return Some(State::LeftDelim);
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.line += self.input[self.start..self.pos].matches('\n').count();
            self.emit(ItemType::Text);
        }
        self.emit(ItemType::Eof);
        None
    }

    fn lex_left_delim(&mut self) -> Option<State> {
        self.pos += LEFT_DELIM.len();
        let trim = has_left_trim_marker(self.rest());
        let after = if trim { TRIM_MARKER_LEN } else { 0 };
        if self.input[self.pos + after..].starts_with(LEFT_COMMENT) {
            self.pos += after;
            self.ignore();
            return Some(State::Comment);
        }
        self.emit(ItemType::LeftDelim);
        self.inside_action = true;
        self.pos += after;
        self.ignore();
        self.paren_depth = 0;
        Some(State::InsideAction)
    }

    fn lex_comment(&mut self) -> Option<State> {
        self.pos += LEFT_COMMENT.len();
        let Some(x) = self.rest().find(RIGHT_COMMENT) else {
            return self.errorf("unclosed comment".into());
        };
        self.pos += x + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before closing delimiter".into());
        }
        self.line += self.input[self.start..self.pos].matches('\n').count();
        self.start = self.pos;
        self.start_line = self.line;
        if trim {
            self.pos += TRIM_MARKER_LEN;
        }
        self.pos += RIGHT_DELIM.len();
        if trim {
            self.pos += left_trim_length(self.rest());
        }
        self.ignore();
        Some(State::Text)
    }

    fn lex_right_delim(&mut self) -> Option<State> {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += TRIM_MARKER_LEN;
            self.ignore();
        }
        self.pos += RIGHT_DELIM.len();
        self.emit(ItemType::RightDelim);
        if trim {
            self.pos += left_trim_length(self.rest());
            self.ignore();
        }
        self.inside_action = false;
        Some(State::Text)
    }

    fn lex_inside_action(&mut self) -> Option<State> {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return Some(State::RightDelim);
            }
            return self.errorf("unclosed left paren".into());
        }
        let Some(r) = self.next() else {
            return self.errorf("unclosed action".into());
        };
        match r {
            r if is_space(r) => {
                // Put the space back in case it starts " -}}".
                self.backup();
                Some(State::Space)
            }
            '=' => {
                self.emit(ItemType::Assign);
                Some(State::InsideAction)
            }
            ':' => {
                if self.next() != Some('=') {
                    return self.errorf("expected :=".into());
                }
                self.emit(ItemType::Declare);
                Some(State::InsideAction)
            }
            '|' => {
                self.emit(ItemType::Pipe);
                Some(State::InsideAction)
            }
            '"' => Some(State::Quote),
            '`' => Some(State::RawQuote),
            '$' => Some(State::Variable),
            '\'' => Some(State::Char),
            '.' => {
                // ".field" unless a digit follows, which makes it a number.
                match self.input.as_bytes().get(self.pos) {
                    Some(b) if b.is_ascii_digit() => {
                        self.backup();
                        Some(State::Number)
                    }
                    _ => Some(State::Field),
                }
            }
            '+' | '-' | '0'..='9' => {
                self.backup();
                Some(State::Number)
            }
            r if is_alphanumeric(r) => {
                self.backup();
                Some(State::Identifier)
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(ItemType::LeftParen);
                Some(State::InsideAction)
            }
            ')' => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.errorf("unexpected right paren".into());
                }
                self.emit(ItemType::RightParen);
                Some(State::InsideAction)
            }
            r if r.is_ascii() && !r.is_ascii_control() => {
                self.emit(ItemType::Char);
                Some(State::InsideAction)
            }
            r => self.errorf(format!(
                "unrecognized character in action: {}",
                super::fmt::unicode_u_sharp(r)
            )),
        }
    }

    fn lex_space(&mut self) -> Option<State> {
        let mut num_spaces = 0;
        while let Some(r) = self.peek() {
            if !is_space(r) {
                break;
            }
            self.next();
            num_spaces += 1;
        }
        // A trim-marked right delimiter starts with a space: do not swallow it.
        let before = &self.input[self.pos - 1..];
        if has_right_trim_marker(before) && before[TRIM_MARKER_LEN..].starts_with(RIGHT_DELIM) {
            self.backup();
            if num_spaces == 1 {
                return Some(State::RightDelim);
            }
        }
        self.emit(ItemType::Space);
        Some(State::InsideAction)
    }

    fn lex_identifier(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some(r) if is_alphanumeric(r) => {}
                r => {
                    if r.is_some() {
                        self.backup();
                    }
                    if !self.at_terminator() {
                        let bad = r.map(super::fmt::unicode_u_sharp).unwrap_or_default();
                        return self.errorf(format!("bad character {bad}"));
                    }
                    let word = &self.input[self.start..self.pos];
                    let typ = match word {
                        "block" => ItemType::Block,
                        "break" => ItemType::Break,
                        "continue" => ItemType::Continue,
                        "define" => ItemType::Define,
                        "else" => ItemType::Else,
                        "end" => ItemType::End,
                        "if" => ItemType::If,
                        "range" => ItemType::Range,
                        "nil" => ItemType::Nil,
                        "template" => ItemType::Template,
                        "with" => ItemType::With,
                        "true" | "false" => ItemType::Bool,
                        _ => ItemType::Identifier,
                    };
                    self.emit(typ);
                    return Some(State::InsideAction);
                }
            }
        }
    }

    fn lex_field_or_variable(&mut self, typ: ItemType) -> Option<State> {
        if self.at_terminator() {
            self.emit(if typ == ItemType::Variable {
                ItemType::Variable
            } else {
                ItemType::Dot
            });
            return Some(State::InsideAction);
        }
        let last;
        loop {
            let r = self.next();
            match r {
                Some(c) if is_alphanumeric(c) => {}
                _ => {
                    if r.is_some() {
                        self.backup();
                    }
                    last = r;
                    break;
                }
            }
        }
        if !self.at_terminator() {
            let bad = last.map(super::fmt::unicode_u_sharp).unwrap_or_default();
            return self.errorf(format!("bad character {bad}"));
        }
        self.emit(typ);
        Some(State::InsideAction)
    }

    fn lex_quoted(&mut self, quote: char, typ: ItemType, unterminated: &str) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some(r) if r != '\n' => {}
                    _ => return self.errorf(unterminated.into()),
                },
                None | Some('\n') => return self.errorf(unterminated.into()),
                Some(r) if r == quote => break,
                Some(_) => {}
            }
        }
        self.emit(typ);
        Some(State::InsideAction)
    }

    fn lex_raw_quote(&mut self) -> Option<State> {
        loop {
            match self.next() {
                None => return self.errorf("unterminated raw quoted string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(ItemType::RawString);
        Some(State::InsideAction)
    }

    fn lex_number(&mut self) -> Option<State> {
        if !self.scan_number() {
            let text = self.input[self.start..self.pos].to_string();
            return self.errorf(format!(
                "bad number syntax: {}",
                super::fmt::quote(&text, false)
            ));
        }
        if let Some('+' | '-') = self.peek() {
            // Complex: 1+2i. No spaces, must end in 'i'.
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let text = self.input[self.start..self.pos].to_string();
                return self.errorf(format!(
                    "bad number syntax: {}",
                    super::fmt::quote(&text, false)
                ));
            }
            self.emit(ItemType::Complex);
        } else {
            self.emit(ItemType::Number);
        }
        Some(State::InsideAction)
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if let Some(r) = self.peek() {
            if is_alphanumeric(r) {
                self.next();
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(ItemType, String)> {
        lex(s).into_iter().map(|i| (i.typ, i.val)).collect()
    }

    #[test]
    fn trim_markers_remove_surrounding_space() {
        use ItemType::*;
        assert_eq!(
            kinds("a  \n{{- 3 -}}\n\t b"),
            vec![
                (Text, "a".into()),
                (LeftDelim, "{{".into()),
                (Number, "3".into()),
                (RightDelim, "}}".into()),
                (Text, "b".into()),
                (Eof, "".into())
            ]
        );
    }

    #[test]
    fn minus_without_space_is_a_number() {
        use ItemType::*;
        assert_eq!(
            kinds("{{-3}}"),
            vec![
                (LeftDelim, "{{".into()),
                (Number, "-3".into()),
                (RightDelim, "}}".into()),
                (Eof, "".into())
            ]
        );
    }

    #[test]
    fn comments_are_dropped_and_may_trim() {
        use ItemType::*;
        assert_eq!(
            kinds("x {{- /* c\n */ -}} y"),
            vec![(Text, "x".into()), (Text, "y".into()), (Eof, "".into())]
        );
        assert_eq!(kinds("{{/* open"), vec![(Error, "unclosed comment".into())]);
    }

    #[test]
    fn fields_variables_and_keywords() {
        use ItemType::*;
        let got = kinds("{{range $i, $e := .Labels.x}}");
        assert_eq!(
            got,
            vec![
                (LeftDelim, "{{".into()),
                (Range, "range".into()),
                (Space, " ".into()),
                (Variable, "$i".into()),
                (Char, ",".into()),
                (Space, " ".into()),
                (Variable, "$e".into()),
                (Space, " ".into()),
                (Declare, ":=".into()),
                (Space, " ".into()),
                (Field, ".Labels".into()),
                (Field, ".x".into()),
                (RightDelim, "}}".into()),
                (Eof, "".into())
            ]
        );
    }

    #[test]
    fn lines_are_counted_across_text_and_raw_strings() {
        let items = lex("a\nb{{`x\ny`}}\n{{.}}");
        let dot = items
            .iter()
            .find(|i| i.typ == ItemType::Dot)
            .map(|i| i.line);
        assert_eq!(dot, Some(4));
    }

    #[test]
    fn errors() {
        assert_eq!(
            lex("{{").last().map(|i| i.val.clone()),
            Some("unclosed action".into())
        );
        assert_eq!(
            lex("{{ \"a }}").last().map(|i| i.val.clone()),
            Some("unterminated quoted string".into())
        );
        assert_eq!(
            lex("{{ (1 }}").last().map(|i| i.val.clone()),
            Some("unclosed left paren".into())
        );
        assert_eq!(
            lex("{{ 3x }}").last().map(|i| i.val.clone()),
            Some("bad number syntax: \"3x\"".into())
        );
        assert_eq!(
            lex("{{\u{a0}}}").last().map(|i| i.val.clone()),
            Some("unrecognized character in action: U+00A0".into())
        );
    }
}
