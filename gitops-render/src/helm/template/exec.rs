//! The executor: walks parsed templates with Go's `text/template` semantics.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::Instant;

use super::parse::{Arena, Arg, Branch, Command, List, Node, Number, Pipe, Set, Tree};
use crate::helm::value::Value;

/// A fast hasher for the engine's small tables keyed by names (function names, template
/// names, identifiers): FxHash's multiply-rotate mixing, a word at a time.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const FX_SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// The `BuildHasher` of [`FastHasher`].
pub type FastHash = BuildHasherDefault<FastHasher>;

/// Limits on one render.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How deep `include`/`tpl`/`template` may nest.
    pub max_depth: usize,
    /// How many bytes one template may produce.
    pub max_output: usize,
    /// When the render must stop.
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 1000,
            max_output: 256 * 1024 * 1024,
            deadline: None,
        }
    }
}

/// Why execution stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// A Go-formatted execution error (`template: x:1:2: executing ...`).
    Exec(String),
    /// Nesting deeper than the limit.
    Depth(String),
    /// Too much output.
    OutputTooLarge(usize),
    /// The deadline passed.
    Timeout,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Exec(s) => f.write_str(s),
            ExecError::Depth(name) => write!(
                f,
                "rendering template has a nested reference name: {name}: unable to execute template"
            ),
            ExecError::OutputTooLarge(n) => {
                write!(f, "template output exceeds the limit of {n} bytes")
            }
            ExecError::Timeout => f.write_str("template rendering exceeded its time limit"),
        }
    }
}

/// What a function call returns when it fails: a message for Go's `error calling X: msg`.
pub type FuncResult = Result<Value, FuncError>;

/// A function's failure.
#[derive(Debug, Clone)]
pub enum FuncError {
    /// An ordinary error message.
    Msg(String),
    /// A limit error that must pass through unchanged.
    Limit(ExecError),
}

impl From<String> for FuncError {
    fn from(s: String) -> Self {
        FuncError::Msg(s)
    }
}
impl From<&str> for FuncError {
    fn from(s: &str) -> Self {
        FuncError::Msg(s.to_string())
    }
}

/// A template function.
pub type Func = fn(&mut Exec<'_>, &[Value]) -> FuncResult;

/// The function table.
pub type FuncMap = HashMap<&'static str, Func, FastHash>;

enum Flow {
    Break,
    Continue,
    Err(ExecError),
}

impl From<ExecError> for Flow {
    fn from(e: ExecError) -> Self {
        Flow::Err(e)
    }
}

/// What an error message names as the failing expression (`at <...>`), formatted only when an
/// error is reported.
#[derive(Clone, Copy)]
enum Ctx<'n> {
    Cmd(&'n Arena, &'n Command),
    Arg(&'n Arena, &'n Arg),
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ctx::Cmd(a, c) => write!(f, "{}", a.show(*c)),
            Ctx::Arg(a, x) => write!(f, "{}", a.show(*x)),
        }
    }
}

/// One execution: the template namespace, functions, limits and the current state.
pub struct Exec<'a> {
    /// Templates by name (the base namespace).
    pub set: &'a Set,
    /// Namespaces added by `tpl` (searched first, innermost last).
    pub overlays: Vec<HashMap<String, Rc<Tree>>>,
    /// Functions.
    pub funcs: &'a FuncMap,
    /// Limits.
    pub limits: Limits,
    /// Current nesting of include/tpl/template.
    pub depth: usize,
    /// Nesting per included name (Helm's include recursion guard).
    pub included: HashMap<String, usize, FastHash>,
    /// The cluster `lookup` asks; `None` renders offline (empty maps, as `helm template`).
    pub cluster: Option<std::sync::Arc<dyn crate::helm::lookup::Lookup + Send + Sync>>,
    /// Extra state for functions (the chart's files, capabilities ...) is reached through values.
    tree: Option<Rc<Tree>>,
    /// Variables of every template being executed; the current one's start at `var_base`.
    vars: Vec<(Rc<str>, Value)>,
    var_base: usize,
    dollar: Rc<str>,
    /// Output of every template being executed; the current one's starts at `out_start`.
    out: String,
    out_start: usize,
    /// Argument vectors for function calls, reused.
    arg_pool: Vec<Vec<Value>>,
    steps: u64,
}

impl<'a> Exec<'a> {
    /// A new executor over a template set.
    pub fn new(set: &'a Set, funcs: &'a FuncMap, limits: Limits) -> Self {
        Exec {
            set,
            overlays: Vec::new(),
            funcs,
            limits,
            depth: 0,
            included: HashMap::default(),
            cluster: None,
            tree: None,
            vars: Vec::new(),
            var_base: 0,
            dollar: Rc::from("$"),
            out: String::new(),
            out_start: 0,
            arg_pool: Vec::new(),
            steps: 0,
        }
    }

    /// Looks a template up by name.
    pub fn lookup(&self, name: &str) -> Option<Rc<Tree>> {
        for o in self.overlays.iter().rev() {
            if let Some(t) = o.get(name) {
                return Some(t.clone());
            }
        }
        self.set.templates.get(name).cloned()
    }

    fn no_template(name: &str) -> ExecError {
        ExecError::Exec(format!(
            "template: no template {name:?} associated with template \"gotpl\""
        ))
    }

    /// Executes the template `name` with `data`, returning its output.
    pub fn execute(&mut self, name: &str, data: Value) -> Result<String, ExecError> {
        let Some(tree) = self.lookup(name) else {
            return Err(Self::no_template(name));
        };
        self.execute_tree(tree, data)
    }

    /// Executes the template `name` with `data`, returning its output as a string value
    /// (what `include` returns).
    pub fn execute_value(&mut self, name: &str, data: Value) -> Result<Value, ExecError> {
        let Some(tree) = self.lookup(name) else {
            return Err(Self::no_template(name));
        };
        let start = self.out.len();
        let r = self.run_tree(tree, data);
        let v = r.map(|()| Value::Str(Rc::from(&self.out[start..])));
        self.out.truncate(start);
        v
    }

    /// Executes a parsed tree with `data`.
    pub fn execute_tree(&mut self, tree: Rc<Tree>, data: Value) -> Result<String, ExecError> {
        let start = self.out.len();
        let r = self.run_tree(tree, data);
        let out = if start == 0 {
            std::mem::take(&mut self.out)
        } else {
            let s = self.out[start..].to_string();
            self.out.truncate(start);
            s
        };
        r.map(|()| out)
    }

    /// Executes a tree, appending its output to `self.out`.
    fn run_tree(&mut self, tree: Rc<Tree>, data: Value) -> Result<(), ExecError> {
        if self.depth >= self.limits.max_depth {
            return Err(ExecError::Depth(tree.name.clone()));
        }
        self.depth += 1;
        let saved_tree = self.tree.replace(tree.clone());
        let saved_base = std::mem::replace(&mut self.var_base, self.vars.len());
        let saved_start = std::mem::replace(&mut self.out_start, self.out.len());
        let dot = data.clone();
        self.vars.push((self.dollar.clone(), data));
        let arena: &Arena = &tree.arena;
        let res = self.walk_list(arena, &dot, arena.nodes(tree.root));
        self.vars.truncate(self.var_base);
        self.var_base = saved_base;
        self.out_start = saved_start;
        self.tree = saved_tree;
        self.depth -= 1;
        match res {
            Ok(()) | Err(Flow::Break | Flow::Continue) => Ok(()),
            Err(Flow::Err(e)) => Err(e),
        }
    }

    fn errorf(&self, pos: Option<usize>, context: &dyn fmt::Display, msg: &str) -> ExecError {
        let tree = self.tree.as_ref();
        let name = tree.map(|t| t.name.as_str()).unwrap_or("gotpl");
        match (tree, pos) {
            (Some(t), Some(p)) => ExecError::Exec(format!(
                "template: {}: executing {:?} at <{}>: {}",
                t.location(p),
                name,
                context,
                msg
            )),
            _ => ExecError::Exec(format!("template: {name}: {msg}")),
        }
    }

    fn tick(&mut self) -> Result<(), ExecError> {
        self.steps += 1;
        if self.steps.is_multiple_of(4096)
            && let Some(d) = self.limits.deadline
            && Instant::now() > d
        {
            return Err(ExecError::Timeout);
        }
        if self.out.len() - self.out_start > self.limits.max_output {
            return Err(ExecError::OutputTooLarge(self.limits.max_output));
        }
        Ok(())
    }

    fn walk_list(&mut self, a: &Arena, dot: &Value, list: &[Node]) -> Result<(), Flow> {
        for n in list {
            self.walk(a, dot, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, a: &Arena, dot: &Value, node: &Node) -> Result<(), Flow> {
        self.tick()?;
        match node {
            Node::Text(s, e) => self.out.push_str(a.text(*s, *e)),
            Node::Action(pipe) => {
                let v = self.eval_pipeline(a, dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print(&v);
                }
            }
            Node::If(b) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(a, dot, &b.pipe)?;
                let r = if v.truthy() {
                    self.walk_list(a, dot, a.nodes(b.list))
                } else if let Some(e) = &b.else_list {
                    self.walk_list(a, dot, a.nodes(*e))
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                r?;
            }
            Node::With(b) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(a, dot, &b.pipe)?;
                let r = if v.truthy() {
                    self.walk_list(a, &v, a.nodes(b.list))
                } else if let Some(e) = &b.else_list {
                    self.walk_list(a, dot, a.nodes(*e))
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                r?;
            }
            Node::Range(b) => self.walk_range(a, dot, b)?,
            Node::Break(_) => return Err(Flow::Break),
            Node::Continue(_) => return Err(Flow::Continue),
            Node::Template { pos, name, pipe } => {
                let data = match pipe {
                    Some(p) => self.eval_pipeline(a, dot, p)?,
                    None => Value::Nil,
                };
                let Some(tree) = self.lookup(name) else {
                    return Err(self
                        .errorf(
                            Some(*pos),
                            &format!("template {name:?}"),
                            &format!("template {name:?} not defined"),
                        )
                        .into());
                };
                self.run_tree(tree, data)?;
            }
        }
        Ok(())
    }

    fn walk_range(&mut self, a: &Arena, dot: &Value, b: &Branch) -> Result<(), Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(a, dot, &b.pipe)?;
        let after_decl = self.vars.len();
        let ndecl = b.pipe.decl.len as usize;
        // Maps and objects are snapshot (Go sorts the keys and values first); lists are
        // immutable values, iterated in place.
        let mut items: Vec<(Value, Value)> = Vec::new();
        let list = match &val {
            Value::List(l) => Some(l.clone()),
            Value::Map(m) => {
                items.extend(
                    m.borrow()
                        .iter()
                        .map(|(k, v)| (Value::from(k.as_str()), v.clone())),
                );
                None
            }
            Value::Bytes(bs) => {
                items.extend(
                    bs.iter()
                        .enumerate()
                        .map(|(i, v)| (Value::Int(i as i64), Value::Int(*v as i64))),
                );
                None
            }
            Value::Nil => None,
            Value::Object(o) if o.range_items().is_some() => {
                items = o.range_items().unwrap_or_default();
                None
            }
            other => {
                return Err(self
                    .errorf(
                        Some(b.pipe.pos),
                        &a.show(&b.pipe),
                        &format!("range can't iterate over {}", other.to_go_string()),
                    )
                    .into());
            }
        };
        let empty = match &list {
            Some(l) => l.is_empty(),
            None => items.is_empty(),
        };
        if empty {
            let r = match &b.else_list {
                Some(e) => self.walk_list(a, dot, a.nodes(*e)),
                None => Ok(()),
            };
            self.vars.truncate(mark);
            return r;
        }
        let one = |ex: &mut Self, k: Value, v: Value| -> Result<bool, Flow> {
            if ndecl >= 1 {
                let n = ex.vars.len();
                ex.vars[n - 1].1 = v.clone();
                if ndecl > 1 {
                    ex.vars[n - 2].1 = k;
                }
            }
            let r = ex.walk_list(a, &v, a.nodes(b.list));
            ex.vars.truncate(after_decl);
            match r {
                Ok(()) | Err(Flow::Continue) => Ok(false),
                Err(Flow::Break) => Ok(true),
                Err(e) => Err(e),
            }
        };
        let res = match list {
            Some(l) => {
                let mut res = Ok(());
                for (i, v) in l.iter().enumerate() {
                    match one(self, Value::Int(i as i64), v.clone()) {
                        Ok(false) => {}
                        Ok(true) => break,
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    }
                }
                res
            }
            None => {
                let mut res = Ok(());
                for (k, v) in items {
                    match one(self, k, v) {
                        Ok(false) => {}
                        Ok(true) => break,
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    }
                }
                res
            }
        };
        self.vars.truncate(mark);
        res
    }

    fn print(&mut self, v: &Value) {
        match v {
            Value::Nil => self.out.push_str("<no value>"),
            Value::Str(s) => self.out.push_str(s),
            other => other.write_go(&mut self.out, true),
        }
    }

    fn eval_pipeline(&mut self, a: &Arena, dot: &Value, pipe: &Pipe) -> Result<Value, ExecError> {
        let mut value: Option<Value> = None;
        for cmd in a.cmds(pipe.cmds) {
            value = Some(self.eval_command(a, dot, cmd, value)?);
        }
        let value = value.unwrap_or_default();
        for var in a.names(pipe.decl) {
            if pipe.is_assign {
                let base = self.var_base;
                match self.vars[base..].iter_mut().rev().find(|(n, _)| n == var) {
                    Some(slot) => slot.1 = value.clone(),
                    None => {
                        return Err(self.errorf(
                            Some(pipe.pos),
                            &a.show(pipe),
                            &format!("undefined variable: {var}"),
                        ));
                    }
                }
            } else {
                self.vars.push((var.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn eval_command(
        &mut self,
        a: &Arena,
        dot: &Value,
        cmd: &Command,
        fin: Option<Value>,
    ) -> Result<Value, ExecError> {
        let args = a.args(cmd.args);
        let (first, rest) = args
            .split_first()
            .expect("the parser never builds a command without operands");
        let ctx = Ctx::Cmd(a, cmd);
        match first {
            Arg::Field(pos, idents) => {
                self.eval_field_chain(a, dot, dot.clone(), *pos, *idents, rest, fin, ctx)
            }
            Arg::Chain(pos, node, idents) => {
                let base = self.eval_arg(a, dot, a.arg(*node))?;
                if base.is_nil() {
                    // Go: a field of an invalid (nil) pipeline result is the zero value.
                    return Ok(Value::Nil);
                }
                self.eval_field_chain(a, dot, base, *pos, *idents, rest, fin, ctx)
            }
            Arg::Variable(pos, name, idents) => {
                let v = self.var(name, *pos)?;
                if idents.is_empty() {
                    if !rest.is_empty() || fin.is_some() {
                        return Err(self.errorf(
                            Some(*pos),
                            &ctx,
                            &format!("can't give argument to non-function {name}"),
                        ));
                    }
                    return Ok(v);
                }
                if v.is_nil() {
                    return Ok(Value::Nil);
                }
                self.eval_field_chain(a, dot, v, *pos, *idents, rest, fin, ctx)
            }
            Arg::Ident(pos, name) => {
                self.eval_function(a, dot, *pos, name, cmd.pos, rest, ctx, fin)
            }
            Arg::Pipe(_, p) => {
                if !rest.is_empty() || fin.is_some() {
                    return Err(self.errorf(
                        Some(cmd.pos),
                        &ctx,
                        &format!("can't give argument to non-function {}", a.show(first)),
                    ));
                }
                self.eval_pipeline(a, dot, a.pipe(*p))
            }
            other => {
                if !rest.is_empty() || fin.is_some() {
                    return Err(self.errorf(
                        Some(other.pos()),
                        &ctx,
                        &format!("can't give argument to non-function {}", a.show(other)),
                    ));
                }
                if let Arg::Nil(pos) = other {
                    return Err(self.errorf(Some(*pos), &ctx, "nil is not a command"));
                }
                self.eval_arg(a, dot, other)
            }
        }
    }

    fn var(&self, name: &str, pos: usize) -> Result<Value, ExecError> {
        match self.vars[self.var_base..]
            .iter()
            .rev()
            .find(|(n, _)| &**n == name)
        {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.errorf(Some(pos), &name, &format!("undefined variable: {name}"))),
        }
    }

    fn eval_arg(&mut self, a: &Arena, dot: &Value, arg: &Arg) -> Result<Value, ExecError> {
        let ctx = Ctx::Arg(a, arg);
        Ok(match arg {
            Arg::Dot(_) => dot.clone(),
            Arg::Nil(_) => Value::Nil,
            Arg::Bool(_, b) => Value::Bool(*b),
            Arg::Number(_, Number::Int(i)) => Value::Int(*i),
            Arg::Number(_, Number::Float(f)) => Value::Float(*f),
            Arg::Str(_, s, _) => Value::Str(s.clone()),
            Arg::Field(pos, idents) => {
                self.eval_field_chain(a, dot, dot.clone(), *pos, *idents, &[], None, ctx)?
            }
            Arg::Variable(pos, name, idents) => {
                let v = self.var(name, *pos)?;
                if idents.is_empty() || v.is_nil() {
                    v
                } else {
                    self.eval_field_chain(a, dot, v, *pos, *idents, &[], None, ctx)?
                }
            }
            Arg::Pipe(_, p) => self.eval_pipeline(a, dot, a.pipe(*p))?,
            Arg::Chain(pos, node, idents) => {
                let base = self.eval_arg(a, dot, a.arg(*node))?;
                if base.is_nil() {
                    return Ok(Value::Nil);
                }
                self.eval_field_chain(a, dot, base, *pos, *idents, &[], None, ctx)?
            }
            Arg::Ident(pos, name) => {
                self.eval_function(a, dot, *pos, name, *pos, &[], ctx, None)?
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_field_chain(
        &mut self,
        a: &Arena,
        dot: &Value,
        mut receiver: Value,
        pos: usize,
        idents: List,
        args: &[Arg],
        fin: Option<Value>,
        ctx: Ctx<'_>,
    ) -> Result<Value, ExecError> {
        let Some((last, init)) = a.names(idents).split_last() else {
            return Ok(receiver);
        };
        for ident in init {
            receiver = self.eval_field(a, dot, &receiver, pos, ident, &[], None, ctx)?;
        }
        self.eval_field(a, dot, &receiver, pos, last, args, fin, ctx)
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_field(
        &mut self,
        a: &Arena,
        dot: &Value,
        receiver: &Value,
        pos: usize,
        name: &str,
        args: &[Arg],
        fin: Option<Value>,
        ctx: Ctx<'_>,
    ) -> Result<Value, ExecError> {
        let has_args = !args.is_empty() || fin.is_some();
        match receiver {
            Value::Map(m) => {
                if has_args {
                    return Err(self.errorf(
                        Some(pos),
                        &ctx,
                        &format!("{name} is not a method but has arguments"),
                    ));
                }
                Ok(m.borrow().get(name).cloned().unwrap_or(Value::Nil))
            }
            Value::Object(o) => {
                let mut argv = Vec::new();
                for arg in args {
                    argv.push(self.eval_arg(a, dot, arg)?);
                }
                if let Some(f) = fin {
                    argv.push(f);
                }
                if let Some(r) = o.call(name, &argv) {
                    return r.map_err(|e| {
                        self.errorf(Some(pos), &ctx, &format!("error calling {name}: {e}"))
                    });
                }
                if let Some(v) = o.field(name) {
                    if !argv.is_empty() {
                        return Err(self.errorf(
                            Some(pos),
                            &ctx,
                            &format!("{name} has arguments but cannot be invoked as function"),
                        ));
                    }
                    return Ok(v);
                }
                Err(self.errorf(
                    Some(pos),
                    &ctx,
                    &format!("can't evaluate field {name} in type {}", o.type_name()),
                ))
            }
            Value::Nil => Err(self.errorf(
                Some(pos),
                &ctx,
                &format!("nil pointer evaluating interface {{}}.{name}"),
            )),
            other => Err(self.errorf(
                Some(pos),
                &ctx,
                &format!("can't evaluate field {name} in type {}", other.type_name()),
            )),
        }
    }

    /// Calls function `name` (at `pos`) with the operands `args` and the piped value `fin`;
    /// `cmd_pos` and `ctx` locate the command for error messages.
    #[allow(clippy::too_many_arguments)]
    fn eval_function(
        &mut self,
        a: &Arena,
        dot: &Value,
        pos: usize,
        name: &str,
        cmd_pos: usize,
        args: &[Arg],
        ctx: Ctx<'_>,
        fin: Option<Value>,
    ) -> Result<Value, ExecError> {
        // Short-circuit boolean operators return operands.
        if name == "and" || name == "or" {
            let total = args.len() + usize::from(fin.is_some());
            if total == 0 {
                return Err(self.errorf(
                    Some(pos),
                    &ctx,
                    &format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = Value::Nil;
            for arg in args {
                last = self.eval_arg(a, dot, arg)?;
                if (name == "and") != last.truthy() {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let Some(f) = self.funcs.get(name).copied() else {
            return Err(self.errorf(
                Some(pos),
                &name,
                &format!("{name:?} is not a defined function"),
            ));
        };
        let mut argv = self.arg_pool.pop().unwrap_or_default();
        for arg in args {
            match self.eval_arg(a, dot, arg) {
                Ok(v) => argv.push(v),
                Err(e) => {
                    argv.clear();
                    self.arg_pool.push(argv);
                    return Err(e);
                }
            }
        }
        if let Some(v) = fin {
            argv.push(v);
        }
        let r = f(self, &argv);
        argv.clear();
        self.arg_pool.push(argv);
        match r {
            Ok(v) => Ok(v),
            Err(FuncError::Limit(e)) => Err(e),
            Err(FuncError::Msg(m)) => {
                Err(self.errorf(Some(cmd_pos), &ctx, &format!("error calling {name}: {m}")))
            }
        }
    }

    /// Parses and executes template text in a fresh namespace layer (Helm's `tpl`).
    pub fn eval_text(&mut self, text: &str, data: Value) -> Result<String, FuncError> {
        let funcs = self.funcs;
        let parsed = super::parse::parse("gotpl", text, &|n| {
            funcs.contains_key(n) || n == "and" || n == "or"
        })
        .map_err(|e| FuncError::Msg(format!("cannot parse template {text:?}: {e}")))?;
        let mut layer = HashMap::new();
        for d in parsed.defines {
            layer.insert(d.name.clone(), d);
        }
        self.overlays.push(layer);
        let r = self.execute_tree(parsed.body, data);
        self.overlays.pop();
        match r {
            Ok(s) => Ok(if s.contains("<no value>") {
                s.replace("<no value>", "")
            } else {
                s
            }),
            Err(ExecError::Exec(m)) => Err(FuncError::Msg(format!(
                "error during tpl function execution for {text:?}: {m}"
            ))),
            Err(e) => Err(FuncError::Limit(e)),
        }
    }
}
