//! The executor of Go's `text/template` (a port of `text/template/exec.go`): walks a parsed
//! tree against a data [`Value`], with Go's variable scoping, `range` over lists and maps in key
//! order, `missingkey=zero` (Prometheus' option), argument type checks and Go's error texts,
//! including where the error happened (`NAME:LINE:COL`) and which node was being evaluated.

use super::funcs::{self, Sig, Ty};
use super::parse::{Arg, Branch, Command, Node, Number, Pipe, TreeSet};
use super::value::Value;
use super::Env;

/// How deep `{{template}}` calls may nest before execution stops (Go allows 100000 on its
/// growable stacks; a Rust thread stack is fixed, so we stop much earlier).
const MAX_EXEC_DEPTH: usize = 256;

/// An execution failure: Go's full message and where it happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExecError {
    /// `template: NAME:LINE:COL: executing "NAME" at <...>: ...`
    pub message: String,
    /// Byte offset of the node being evaluated, if any.
    pub offset: Option<usize>,
}

/// Leaving a `range` iteration early, or failing.
enum Flow {
    Break,
    Continue,
    Error(ExecError),
}

impl From<ExecError> for Flow {
    fn from(e: ExecError) -> Self {
        Flow::Error(e)
    }
}

type EResult<T> = Result<T, ExecError>;

/// The node the executor is on, for error messages.
#[derive(Clone, Copy)]
enum At<'t> {
    Arg(&'t Arg),
    Pipe(&'t Pipe),
    Cmd(&'t Command),
    Node(&'t Node, usize),
}

impl At<'_> {
    fn pos(&self) -> usize {
        match self {
            At::Arg(a) => a.pos(),
            At::Pipe(p) => p.pos,
            At::Cmd(c) => c.pos,
            At::Node(_, pos) => *pos,
        }
    }

    fn context(&self) -> String {
        match self {
            At::Arg(a) => a.to_string(),
            At::Pipe(p) => p.to_string(),
            At::Cmd(c) => c.to_string(),
            At::Node(n, _) => n.to_string(),
        }
    }
}

/// Executes template `name` of `trees` (parsed from `text`, which positions refer to).
pub(crate) fn execute(
    trees: &TreeSet,
    parse_name: &str,
    text: &str,
    name: &str,
    data: &Value,
    env: &Env<'_>,
) -> EResult<String> {
    let mut s = State {
        trees,
        parse_name,
        text,
        tmpl_name: name.to_string(),
        env,
        vars: vec![("$".to_string(), data.clone())],
        at: None,
        depth: 0,
        out: String::new(),
    };
    let Some(root) = trees.get(name) else {
        return Err(s.errorf(format!(
            "{} is an incomplete or empty template",
            super::fmt::quote(name, false)
        )));
    };
    match s.walk_list(data, root) {
        Ok(()) => Ok(s.out),
        Err(Flow::Error(e)) => Err(e),
        // The parser only accepts break/continue inside range.
        Err(Flow::Break | Flow::Continue) => Ok(s.out),
    }
}

struct State<'t, 'e> {
    trees: &'t TreeSet,
    parse_name: &'t str,
    text: &'t str,
    tmpl_name: String,
    env: &'t Env<'e>,
    vars: Vec<(String, Value)>,
    at: Option<At<'t>>,
    depth: usize,
    out: String,
}

/// A value that is not there yet: Go's `missingVal` for "no final pipeline argument".
type Final = Option<Value>;

impl<'t, 'e> State<'t, 'e> {
    fn at(&mut self, a: At<'t>) {
        self.at = Some(a);
    }

    fn errorf(&self, msg: String) -> ExecError {
        let name = &self.tmpl_name;
        match &self.at {
            None => ExecError {
                message: format!("template: {name}: {msg}"),
                offset: None,
            },
            Some(a) => {
                let pos = a.pos().min(self.text.len());
                let before = &self.text[..pos];
                let line = 1 + before.matches('\n').count();
                let col = match before.rfind('\n') {
                    Some(i) => pos - (i + 1),
                    None => pos,
                };
                ExecError {
                    message: format!(
                        "template: {}:{line}:{col}: executing {} at <{}>: {msg}",
                        self.parse_name,
                        super::fmt::quote(name, false),
                        a.context()
                    ),
                    offset: Some(pos),
                }
            }
        }
    }

    fn mark(&self) -> usize {
        self.vars.len()
    }

    fn pop(&mut self, mark: usize) {
        self.vars.truncate(mark);
    }

    fn set_var(&mut self, name: &str, value: Value) -> EResult<()> {
        for v in self.vars.iter_mut().rev() {
            if v.0 == name {
                v.1 = value;
                return Ok(());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    fn set_top_var(&mut self, n: usize, value: Value) {
        let len = self.vars.len();
        if n <= len {
            self.vars[len - n].1 = value;
        }
    }

    fn var_value(&self, name: &str) -> EResult<Value> {
        for v in self.vars.iter().rev() {
            if v.0 == name {
                return Ok(v.1.clone());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    fn walk_list(&mut self, dot: &Value, list: &'t [Node]) -> Result<(), Flow> {
        for n in list {
            self.walk(dot, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value, node: &'t Node) -> Result<(), Flow> {
        match node {
            Node::Text { text } => {
                self.out.push_str(text);
                Ok(())
            }
            Node::Action { pos, pipe } => {
                self.at(At::Node(node, *pos));
                // Variables declared here persist until the enclosing {{end}}.
                let val = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at(At::Node(node, *pos));
                    self.out.push_str(&print_action(&val));
                }
                Ok(())
            }
            Node::Break { .. } => Err(Flow::Break),
            Node::Continue { .. } => Err(Flow::Continue),
            Node::If(b) => self.walk_if_or_with(false, dot, b),
            Node::With(b) => self.walk_if_or_with(true, dot, b),
            Node::Range(b) => self.walk_range(dot, node, b),
            Node::Template { pos, name, pipe } => {
                self.at(At::Node(node, *pos));
                let Some(tree) = self.trees.get(name) else {
                    return Err(self
                        .errorf(format!(
                            "template {} not defined",
                            super::fmt::quote(name, false)
                        ))
                        .into());
                };
                if self.depth >= MAX_EXEC_DEPTH {
                    return Err(self
                        .errorf(format!(
                            "exceeded maximum template depth ({MAX_EXEC_DEPTH})"
                        ))
                        .into());
                }
                let new_dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => Value::Nil,
                };
                // No dynamic scoping: the called template sees only `$`.
                let saved_vars =
                    std::mem::replace(&mut self.vars, vec![("$".to_string(), new_dot.clone())]);
                let saved_name = std::mem::replace(&mut self.tmpl_name, name.clone());
                self.depth += 1;
                let r = self.walk_list(&new_dot, tree);
                self.depth -= 1;
                self.tmpl_name = saved_name;
                self.vars = saved_vars;
                r
            }
        }
    }

    fn walk_if_or_with(&mut self, with: bool, dot: &Value, b: &'t Branch) -> Result<(), Flow> {
        let mark = self.mark();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let r = if val.is_true() {
            if with {
                self.walk_list(&val, &b.list)
            } else {
                self.walk_list(dot, &b.list)
            }
        } else if let Some(e) = &b.else_list {
            self.walk_list(dot, e)
        } else {
            Ok(())
        };
        self.pop(mark);
        r
    }

    fn walk_range(&mut self, dot: &Value, node: &'t Node, r: &'t Branch) -> Result<(), Flow> {
        self.at(At::Node(node, r.pos));
        let outer = self.mark();
        let val = self.eval_pipeline(dot, &r.pipe)?;
        let mark = self.mark();
        let items: Vec<(Value, Value)> = match &val {
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Vector(v) => v
                .iter()
                .enumerate()
                .map(|(i, s)| (Value::Int(i as i64), Value::Sample(s.clone())))
                .collect(),
            Value::Map(m) => m
                .entries
                .iter()
                .map(|(k, v)| (Value::String(k.clone()), v.clone()))
                .collect(),
            Value::Int(n) => {
                if r.pipe.decl.len() > 1 {
                    return Err(self
                        .errorf(format!(
                            "can't use {n} to iterate over more than one variable"
                        ))
                        .into());
                }
                (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect()
            }
            Value::Nil => Vec::new(),
            other => {
                let shown = super::fmt::sprint(std::slice::from_ref(other));
                return Err(self
                    .errorf(format!("range can't iterate over {shown}"))
                    .into());
            }
        };
        let ran = !items.is_empty();
        for (index, elem) in items {
            let decl = &r.pipe.decl;
            if !decl.is_empty() {
                if r.pipe.is_assign {
                    // With two variables the index comes first; with one, the element.
                    if decl.len() > 1 {
                        self.set_var(&decl[0], index.clone())?;
                    } else {
                        self.set_var(&decl[0], elem.clone())?;
                    }
                } else {
                    self.set_top_var(1, elem.clone());
                }
            }
            if decl.len() > 1 {
                if r.pipe.is_assign {
                    self.set_var(&decl[1], elem.clone())?;
                } else {
                    self.set_top_var(2, index);
                }
            }
            let res = self.walk_list(&elem, &r.list);
            self.pop(mark);
            match res {
                Ok(()) | Err(Flow::Continue) => {}
                Err(Flow::Break) => break,
                Err(e) => return Err(e),
            }
        }
        let res = if !ran {
            match &r.else_list {
                Some(e) => self.walk_list(dot, e),
                None => Ok(()),
            }
        } else {
            Ok(())
        };
        self.pop(outer);
        res
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &'t Pipe) -> EResult<Value> {
        self.at(At::Pipe(pipe));
        let mut value: Final = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for v in &pipe.decl {
            if pipe.is_assign {
                self.set_var(v, value.clone())?;
            } else {
                self.vars.push((v.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], fin: &Final) -> EResult<()> {
        if args.len() > 1 || fin.is_some() {
            let first = args.first().map(|a| a.to_string()).unwrap_or_default();
            return Err(self.errorf(format!("can't give argument to non-function {first}")));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &'t Command, fin: Final) -> EResult<Value> {
        let Some(first) = cmd.args.first() else {
            return Err(self.errorf("empty command".into()));
        };
        match first {
            Arg::Field { ident, .. } => {
                self.at(At::Arg(first));
                return self.eval_field_chain(dot, dot.clone(), first, ident, &cmd.args, fin);
            }
            Arg::Chain { .. } => return self.eval_chain(dot, first, &cmd.args, fin),
            Arg::Identifier { name, .. } => {
                return self.eval_function(dot, first, name, At::Cmd(cmd), &cmd.args, fin)
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                return self.eval_pipeline(dot, p);
            }
            Arg::Variable { .. } => return self.eval_variable(dot, first, &cmd.args, fin),
            _ => {}
        }
        self.at(At::Arg(first));
        self.not_a_function(&cmd.args, &fin)?;
        match first {
            Arg::Bool { value, .. } => Ok(Value::Bool(*value)),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Nil { .. } => Err(self.errorf("nil is not a command".into())),
            Arg::Number { number, .. } => self.ideal_constant(first, number),
            Arg::String { text, .. } => Ok(Value::String(text.clone())),
            other => Err(self.errorf(format!(
                "can't evaluate command {}",
                super::fmt::quote(&other.to_string(), false)
            ))),
        }
    }

    /// A number literal where no type is expected: its syntax decides (Go's `idealConstant`).
    fn ideal_constant(&mut self, node: &'t Arg, n: &Number) -> EResult<Value> {
        self.at(At::Arg(node));
        let t = &n.text;
        let is_hex_int = t.len() > 2
            && t.starts_with('0')
            && (t.as_bytes()[1] | 0x20) == b'x'
            && !t.contains(['p', 'P']);
        let is_rune = t.starts_with('\'');
        if let Some(f) = n.float {
            if !is_hex_int && !is_rune && t.contains(['.', 'e', 'E', 'p', 'P']) {
                return Ok(Value::Float(f));
            }
        }
        if let Some(i) = n.int {
            return Ok(Value::Int(i));
        }
        if n.uint.is_some() {
            return Err(self.errorf(format!("{t} overflows int")));
        }
        Ok(Value::Nil)
    }

    fn eval_chain(
        &mut self,
        dot: &Value,
        chain: &'t Arg,
        args: &'t [Arg],
        fin: Final,
    ) -> EResult<Value> {
        self.at(At::Arg(chain));
        let Arg::Chain { node, field, .. } = chain else {
            return Err(self.errorf("internal error: not a chain".into()));
        };
        if let Arg::Nil { .. } = **node {
            return Err(self.errorf(format!("indirection through explicit nil in {chain}")));
        }
        let receiver = self.eval_arg(dot, Ty::Any, node)?;
        self.eval_field_chain(dot, receiver, chain, field, args, fin)
    }

    fn eval_variable(
        &mut self,
        dot: &Value,
        var: &'t Arg,
        args: &'t [Arg],
        fin: Final,
    ) -> EResult<Value> {
        self.at(At::Arg(var));
        let Arg::Variable { ident, .. } = var else {
            return Err(self.errorf("internal error: not a variable".into()));
        };
        let value = self.var_value(&ident[0])?;
        if ident.len() == 1 {
            self.not_a_function(args, &fin)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, var, &ident[1..], args, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value,
        mut receiver: Value,
        node: &'t Arg,
        ident: &'t [String],
        args: &'t [Arg],
        fin: Final,
    ) -> EResult<Value> {
        let n = ident.len();
        for name in &ident[..n.saturating_sub(1)] {
            receiver = self.eval_field(dot, name, node, &[], None, receiver)?;
        }
        match ident.last() {
            Some(last) => self.eval_field(dot, last, node, args, fin, receiver),
            None => Ok(receiver),
        }
    }

    /// `.Name` on `receiver`: a method call, a struct field or a map key.
    fn eval_field(
        &mut self,
        dot: &Value,
        name: &str,
        node: &'t Arg,
        args: &'t [Arg],
        fin: Final,
        receiver: Value,
    ) -> EResult<Value> {
        if let Value::Nil = receiver {
            // missingkey=zero: a field of nothing is nothing.
            return Ok(Value::Nil);
        }
        if let Some(sig) = funcs::method_sig(&receiver, name) {
            let recv = receiver.clone();
            let name_owned = name.to_string();
            return self.eval_call(
                dot,
                Callee::Method(recv, sig),
                At::Arg(node),
                &name_owned,
                args,
                fin,
            );
        }
        let has_args = args.len() > 1 || fin.is_some();
        let found = match &receiver {
            Value::Struct(s) => match s.field(name) {
                Some(v) => {
                    if has_args {
                        return Err(self.errorf(format!(
                            "{name} has arguments but cannot be invoked as function"
                        )));
                    }
                    Some(v.clone())
                }
                None => None,
            },
            Value::Sample(s) => {
                let v = match name {
                    "Labels" => Some(s.labels_value()),
                    "Value" => Some(Value::Float(s.value)),
                    _ => None,
                };
                if v.is_some() && has_args {
                    return Err(self.errorf(format!(
                        "{name} has arguments but cannot be invoked as function"
                    )));
                }
                v
            }
            Value::Map(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                Some(m.entries.get(name).cloned().unwrap_or_else(|| m.zero()))
            }
            _ => None,
        };
        match found {
            Some(v) => Ok(v),
            None => Err(self.errorf(format!(
                "can't evaluate field {name} in type {}",
                receiver.go_type()
            ))),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        ident: &'t Arg,
        name: &str,
        node: At<'t>,
        args: &'t [Arg],
        fin: Final,
    ) -> EResult<Value> {
        self.at(At::Arg(ident));
        let Some(sig) = funcs::signature(name) else {
            return Err(self.errorf(format!(
                "{} is not a defined function",
                super::fmt::quote(name, false)
            )));
        };
        self.eval_call(
            dot,
            Callee::Func(name.to_string(), sig),
            node,
            name,
            args,
            fin,
        )
    }

    /// Checks the argument count, evaluates the arguments against the parameter types and
    /// calls. `args[0]` is the function's own node, as in Go.
    fn eval_call(
        &mut self,
        dot: &Value,
        callee: Callee,
        node: At<'t>,
        name: &str,
        args: &'t [Arg],
        fin: Final,
    ) -> EResult<Value> {
        let args = if args.is_empty() { args } else { &args[1..] };
        let sig = match &callee {
            Callee::Func(_, s) | Callee::Method(_, s) => *s,
        };
        let num_in = args.len() + usize::from(fin.is_some());
        let num_fixed = if sig.variadic.is_some() {
            sig.params.len()
        } else {
            args.len()
        };
        if sig.variadic.is_some() {
            if num_in < num_fixed {
                return Err(self.errorf(format!(
                    "wrong number of args for {name}: want at least {} got {}",
                    num_fixed,
                    args.len()
                )));
            }
        } else if num_in != sig.params.len() {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want {} got {num_in}",
                sig.params.len()
            )));
        }
        let builtin = matches!(&callee, Callee::Func(n, _) if funcs::exists(n) && super::prom::signature(n).is_none());
        if builtin && (name == "and" || name == "or") {
            let mut v = Value::Nil;
            for a in args {
                v = self.eval_arg(dot, Ty::Any, a)?;
                if v.is_true() == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let mut argv = Vec::with_capacity(num_in);
        let mut i = 0;
        while i < num_fixed && i < args.len() {
            argv.push(self.eval_arg(dot, sig.params[i], &args[i])?);
            i += 1;
        }
        if let Some(tail) = sig.variadic {
            while i < args.len() {
                argv.push(self.eval_arg(dot, tail, &args[i])?);
                i += 1;
            }
        }
        if let Some(f) = fin {
            let t = match sig.variadic {
                Some(tail) if num_in > num_fixed => tail,
                _ => sig.params.get(num_in - 1).copied().unwrap_or(Ty::Any),
            };
            argv.push(self.validate_type(f, t)?);
        }
        if builtin && name == "call" {
            let callee_name = args.first().map(|a| a.to_string()).unwrap_or_default();
            let msg = match argv.first() {
                None | Some(Value::Nil) => "call of nil".to_string(),
                Some(v) => format!("non-function {callee_name} of type {}", v.go_type()),
            };
            self.at(node);
            return Err(self.errorf(format!("error calling call: {msg}")));
        }
        let result = match &callee {
            Callee::Func(n, _) => funcs::call(self.env, n, argv),
            Callee::Method(recv, _) => funcs::call_method(recv, name, &argv),
        };
        result.map_err(|e| {
            self.at(node);
            self.errorf(format!("error calling {name}: {e}"))
        })
    }

    /// Go's `validateType`: a computed value passed where type `t` is expected.
    fn validate_type(&self, v: Value, t: Ty) -> EResult<Value> {
        if let Value::Nil = v {
            return match t {
                Ty::Any | Ty::Sample => Ok(Value::Nil),
                Ty::QueryResult => Ok(Value::Vector(Default::default())),
                _ => Err(self.errorf(format!("invalid value; expected {}", t.go_name()))),
            };
        }
        let ok = match t {
            Ty::Any => true,
            Ty::String => matches!(v, Value::String(_)),
            Ty::QueryResult => matches!(v, Value::Vector(_)),
            Ty::Sample => matches!(v, Value::Sample(_)),
            Ty::Duration => matches!(v, Value::Duration(_)),
            Ty::Time => matches!(v, Value::Time(_)),
        };
        if ok {
            Ok(v)
        } else {
            Err(self.errorf(format!(
                "wrong type for value; expected {}; got {}",
                t.go_name(),
                v.go_type()
            )))
        }
    }

    /// Go's `evalArg`: evaluates one argument for a parameter of type `t`.
    fn eval_arg(&mut self, dot: &Value, t: Ty, n: &'t Arg) -> EResult<Value> {
        self.at(At::Arg(n));
        match n {
            Arg::Dot { .. } => return self.validate_type(dot.clone(), t),
            Arg::Nil { .. } => {
                if t.can_be_nil() {
                    return self.validate_type(Value::Nil, t);
                }
                return Err(self.errorf(format!("cannot assign nil to {}", t.go_name())));
            }
            Arg::Field { ident, .. } => {
                let v = self.eval_field_chain(
                    dot,
                    dot.clone(),
                    n,
                    ident,
                    std::slice::from_ref(n),
                    None,
                )?;
                return self.validate_type(v, t);
            }
            Arg::Variable { .. } => {
                let v = self.eval_variable(dot, n, &[], None)?;
                return self.validate_type(v, t);
            }
            Arg::Pipe(p) => {
                let v = self.eval_pipeline(dot, p)?;
                return self.validate_type(v, t);
            }
            Arg::Identifier { name, .. } => {
                let v = self.eval_function(dot, n, name, At::Arg(n), &[], None)?;
                return self.validate_type(v, t);
            }
            Arg::Chain { .. } => {
                let v = self.eval_chain(dot, n, &[], None)?;
                return self.validate_type(v, t);
            }
            _ => {}
        }
        match (t, n) {
            (Ty::Any, Arg::Bool { value, .. }) => Ok(Value::Bool(*value)),
            (Ty::Any, Arg::Number { number, .. }) => self.ideal_constant(n, number),
            (Ty::Any, Arg::String { text, .. }) => Ok(Value::String(text.clone())),
            (Ty::String, Arg::String { text, .. }) => Ok(Value::String(text.clone())),
            (Ty::String, _) => Err(self.errorf(format!("expected string; found {n}"))),
            (
                Ty::Duration,
                Arg::Number {
                    number: Number { int: Some(i), .. },
                    ..
                },
            ) => Ok(Value::Duration(*i)),
            (Ty::Duration, _) => Err(self.errorf(format!("expected integer; found {n}"))),
            _ => Err(self.errorf(format!("can't handle {n} for arg of type {}", t.go_name()))),
        }
    }
}

/// What a call invokes: a named function or a method bound to its receiver.
enum Callee {
    Func(String, Sig),
    Method(Value, Sig),
}

/// How an action prints a value: Go's `printableValue` (pointers are followed, a missing value
/// is `<no value>`) and then `fmt.Fprint`.
pub(crate) fn print_action(v: &Value) -> String {
    match v {
        Value::Nil => "<no value>".into(),
        Value::Sample(s) => {
            let shown = super::fmt::print_action(&Value::Sample(s.clone()));
            shown.strip_prefix('&').map(str::to_string).unwrap_or(shown)
        }
        other => super::fmt::print_action(other),
    }
}
