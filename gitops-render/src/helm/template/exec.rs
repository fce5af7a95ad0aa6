//! The executor: walks parsed templates with Go's `text/template` semantics.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::parse::{Arg, Branch, Command, Node, Number, Pipe, Set, Tree};
use crate::helm::value::Value;

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
pub type FuncMap = HashMap<&'static str, Func>;

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
    pub included: HashMap<String, usize>,
    /// The cluster `lookup` asks; `None` renders offline (empty maps, as `helm template`).
    pub cluster: Option<std::sync::Arc<dyn crate::helm::lookup::Lookup + Send + Sync>>,
    /// Extra state for functions (the chart's files, capabilities ...) is reached through values.
    tree: Option<Rc<Tree>>,
    vars: Vec<(String, Value)>,
    out: String,
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
            included: HashMap::new(),
            cluster: None,
            tree: None,
            vars: Vec::new(),
            out: String::new(),
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

    /// Executes the template `name` with `data`, returning its output.
    pub fn execute(&mut self, name: &str, data: Value) -> Result<String, ExecError> {
        let Some(tree) = self.lookup(name) else {
            return Err(ExecError::Exec(format!(
                "template: no template {name:?} associated with template \"gotpl\""
            )));
        };
        self.execute_tree(tree, data)
    }

    /// Executes a parsed tree with `data`.
    pub fn execute_tree(&mut self, tree: Rc<Tree>, data: Value) -> Result<String, ExecError> {
        if self.depth >= self.limits.max_depth {
            return Err(ExecError::Depth(tree.name.clone()));
        }
        self.depth += 1;
        let saved_tree = self.tree.replace(tree.clone());
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$".to_string(), data.clone())]);
        let saved_out = std::mem::take(&mut self.out);
        let res = self.walk_list(&data, &tree.root);
        let out = std::mem::replace(&mut self.out, saved_out);
        self.vars = saved_vars;
        self.tree = saved_tree;
        self.depth -= 1;
        match res {
            Ok(()) => Ok(out),
            Err(Flow::Err(e)) => Err(e),
            Err(Flow::Break | Flow::Continue) => Ok(out),
        }
    }

    fn errorf(&self, pos: Option<usize>, context: &str, msg: &str) -> ExecError {
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
        if self.out.len() > self.limits.max_output {
            return Err(ExecError::OutputTooLarge(self.limits.max_output));
        }
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value, list: &[Node]) -> Result<(), Flow> {
        for n in list {
            self.walk(dot, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value, node: &Node) -> Result<(), Flow> {
        self.tick()?;
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print(&v);
                }
            }
            Node::If(b) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(dot, &b.pipe)?;
                let r = if v.truthy() {
                    self.walk_list(dot, &b.list)
                } else if let Some(e) = &b.else_list {
                    self.walk_list(dot, e)
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                r?;
            }
            Node::With(b) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(dot, &b.pipe)?;
                let r = if v.truthy() {
                    self.walk_list(&v, &b.list)
                } else if let Some(e) = &b.else_list {
                    self.walk_list(dot, e)
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                r?;
            }
            Node::Range(b) => self.walk_range(dot, b)?,
            Node::Break(_) => return Err(Flow::Break),
            Node::Continue(_) => return Err(Flow::Continue),
            Node::Template { pos, name, pipe } => {
                let data = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
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
                let out = self.execute_tree(tree, data)?;
                self.out.push_str(&out);
            }
        }
        Ok(())
    }

    fn walk_range(&mut self, dot: &Value, b: &Branch) -> Result<(), Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let after_decl = self.vars.len();
        let ndecl = b.pipe.decl.len();
        let mut items: Vec<(Value, Value)> = Vec::new();
        match &val {
            Value::List(l) => {
                for (i, v) in l.iter().enumerate() {
                    items.push((Value::Int(i as i64), v.clone()));
                }
            }
            Value::Map(m) => {
                for (k, v) in m.borrow().iter() {
                    items.push((Value::from(k.as_str()), v.clone()));
                }
            }
            Value::Bytes(bs) => {
                for (i, v) in bs.iter().enumerate() {
                    items.push((Value::Int(i as i64), Value::Int(*v as i64)));
                }
            }
            Value::Nil => {}
            Value::Object(o) if o.range_items().is_some() => {
                items = o.range_items().unwrap_or_default();
            }
            other => {
                return Err(self
                    .errorf(
                        Some(b.pipe.pos),
                        &b.pipe.to_string(),
                        &format!("range can't iterate over {}", other.to_go_string()),
                    )
                    .into());
            }
        }
        if items.is_empty() {
            let r = match &b.else_list {
                Some(e) => self.walk_list(dot, e),
                None => Ok(()),
            };
            self.vars.truncate(mark);
            return r;
        }
        for (k, v) in items {
            if ndecl >= 1 {
                let n = self.vars.len();
                if ndecl == 1 {
                    self.vars[n - 1].1 = v.clone();
                } else {
                    self.vars[n - 1].1 = v.clone();
                    self.vars[n - 2].1 = k;
                }
            }
            let r = self.walk_list(&v, &b.list);
            self.vars.truncate(after_decl);
            match r {
                Ok(()) | Err(Flow::Continue) => {}
                Err(Flow::Break) => break,
                Err(e) => {
                    self.vars.truncate(mark);
                    return Err(e);
                }
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn print(&mut self, v: &Value) {
        match v {
            Value::Nil => self.out.push_str("<no value>"),
            Value::Str(s) => self.out.push_str(s),
            other => {
                let s = other.to_go_string();
                self.out.push_str(&s);
            }
        }
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe) -> Result<Value, ExecError> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or_default();
        for var in &pipe.decl {
            if pipe.is_assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == var) {
                    Some(slot) => slot.1 = value.clone(),
                    None => {
                        return Err(self.errorf(
                            Some(pipe.pos),
                            &pipe.to_string(),
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
        dot: &Value,
        cmd: &Command,
        fin: Option<Value>,
    ) -> Result<Value, ExecError> {
        let first = &cmd.args[0];
        match first {
            Arg::Field(pos, idents) => {
                let ctx = cmd.to_string();
                self.eval_field_chain(dot, dot.clone(), *pos, idents, &cmd.args[1..], fin, &ctx)
            }
            Arg::Chain(pos, node, idents) => {
                let base = self.eval_arg(dot, node)?;
                if base.is_nil() {
                    // Go: a field of an invalid (nil) pipeline result is the zero value.
                    return Ok(Value::Nil);
                }
                let ctx = cmd.to_string();
                self.eval_field_chain(dot, base, *pos, idents, &cmd.args[1..], fin, &ctx)
            }
            Arg::Variable(pos, name, idents) => {
                let v = self.var(name, *pos)?;
                if idents.is_empty() {
                    if cmd.args.len() > 1 || fin.is_some() {
                        return Err(self.errorf(
                            Some(*pos),
                            &cmd.to_string(),
                            &format!("can't give argument to non-function {name}"),
                        ));
                    }
                    return Ok(v);
                }
                if v.is_nil() {
                    return Ok(Value::Nil);
                }
                let ctx = cmd.to_string();
                self.eval_field_chain(dot, v, *pos, idents, &cmd.args[1..], fin, &ctx)
            }
            Arg::Ident(pos, name) => self.eval_function(dot, *pos, name, cmd, fin),
            Arg::Pipe(_, p) => {
                if cmd.args.len() > 1 || fin.is_some() {
                    return Err(self.errorf(
                        Some(cmd.pos),
                        &cmd.to_string(),
                        &format!("can't give argument to non-function {first}"),
                    ));
                }
                self.eval_pipeline(dot, p)
            }
            other => {
                if cmd.args.len() > 1 || fin.is_some() {
                    return Err(self.errorf(
                        Some(other.pos()),
                        &cmd.to_string(),
                        &format!("can't give argument to non-function {other}"),
                    ));
                }
                self.eval_arg(dot, other)
            }
        }
    }

    fn var(&self, name: &str, pos: usize) -> Result<Value, ExecError> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.errorf(Some(pos), name, &format!("undefined variable: {name}"))),
        }
    }

    fn eval_arg(&mut self, dot: &Value, arg: &Arg) -> Result<Value, ExecError> {
        Ok(match arg {
            Arg::Dot(_) => dot.clone(),
            Arg::Nil(_) => Value::Nil,
            Arg::Bool(_, b) => Value::Bool(*b),
            Arg::Number(_, Number::Int(i)) => Value::Int(*i),
            Arg::Number(_, Number::Float(f)) => Value::Float(*f),
            Arg::Str(_, s, _) => Value::Str(s.clone()),
            Arg::Field(pos, idents) => {
                let ctx = arg.to_string();
                self.eval_field_chain(dot, dot.clone(), *pos, idents, &[], None, &ctx)?
            }
            Arg::Variable(pos, name, idents) => {
                let v = self.var(name, *pos)?;
                if idents.is_empty() || v.is_nil() {
                    v
                } else {
                    let ctx = arg.to_string();
                    self.eval_field_chain(dot, v, *pos, idents, &[], None, &ctx)?
                }
            }
            Arg::Pipe(_, p) => self.eval_pipeline(dot, p)?,
            Arg::Chain(pos, node, idents) => {
                let base = self.eval_arg(dot, node)?;
                if base.is_nil() {
                    return Ok(Value::Nil);
                }
                let ctx = arg.to_string();
                self.eval_field_chain(dot, base, *pos, idents, &[], None, &ctx)?
            }
            Arg::Ident(pos, name) => {
                let cmd = Command {
                    pos: *pos,
                    args: vec![arg.clone()],
                };
                self.eval_function(dot, *pos, name, &cmd, None)?
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_field_chain(
        &mut self,
        dot: &Value,
        mut receiver: Value,
        pos: usize,
        idents: &[String],
        args: &[Arg],
        fin: Option<Value>,
        ctx: &str,
    ) -> Result<Value, ExecError> {
        let n = idents.len();
        for (i, ident) in idents.iter().enumerate() {
            let last = i + 1 == n;
            receiver = if last {
                self.eval_field(dot, &receiver, pos, ident, args, fin.clone(), ctx)?
            } else {
                self.eval_field(dot, &receiver, pos, ident, &[], None, ctx)?
            };
        }
        Ok(receiver)
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_field(
        &mut self,
        dot: &Value,
        receiver: &Value,
        pos: usize,
        name: &str,
        args: &[Arg],
        fin: Option<Value>,
        ctx: &str,
    ) -> Result<Value, ExecError> {
        let has_args = !args.is_empty() || fin.is_some();
        match receiver {
            Value::Map(m) => {
                if has_args {
                    return Err(self.errorf(
                        Some(pos),
                        ctx,
                        &format!("{name} is not a method but has arguments"),
                    ));
                }
                Ok(m.borrow().get(name).cloned().unwrap_or(Value::Nil))
            }
            Value::Object(o) => {
                let mut argv = Vec::new();
                for a in args {
                    argv.push(self.eval_arg(dot, a)?);
                }
                if let Some(f) = fin {
                    argv.push(f);
                }
                if let Some(r) = o.call(name, &argv) {
                    return r.map_err(|e| {
                        self.errorf(Some(pos), ctx, &format!("error calling {name}: {e}"))
                    });
                }
                if let Some(v) = o.field(name) {
                    if !argv.is_empty() {
                        return Err(self.errorf(
                            Some(pos),
                            ctx,
                            &format!("{name} has arguments but cannot be invoked as function"),
                        ));
                    }
                    return Ok(v);
                }
                Err(self.errorf(
                    Some(pos),
                    ctx,
                    &format!("can't evaluate field {name} in type {}", o.type_name()),
                ))
            }
            Value::Nil => Err(self.errorf(
                Some(pos),
                ctx,
                &format!("nil pointer evaluating interface {{}}.{name}"),
            )),
            other => Err(self.errorf(
                Some(pos),
                ctx,
                &format!("can't evaluate field {name} in type {}", other.type_name()),
            )),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        pos: usize,
        name: &str,
        cmd: &Command,
        fin: Option<Value>,
    ) -> Result<Value, ExecError> {
        let args = &cmd.args[1..];
        // Short-circuit boolean operators return operands.
        if name == "and" || name == "or" {
            let total = args.len() + usize::from(fin.is_some());
            if total == 0 {
                return Err(self.errorf(
                    Some(pos),
                    &cmd.to_string(),
                    &format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.eval_arg(dot, a)?;
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
                name,
                &format!("{name:?} is not a defined function"),
            ));
        };
        let mut argv = Vec::with_capacity(args.len() + 1);
        for a in args {
            argv.push(self.eval_arg(dot, a)?);
        }
        if let Some(v) = fin {
            argv.push(v);
        }
        match f(self, &argv) {
            Ok(v) => Ok(v),
            Err(FuncError::Limit(e)) => Err(e),
            Err(FuncError::Msg(m)) => Err(self.errorf(
                Some(cmd.pos),
                &cmd.to_string(),
                &format!("error calling {name}: {m}"),
            )),
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
            Ok(s) => Ok(s.replace("<no value>", "")),
            Err(ExecError::Exec(m)) => Err(FuncError::Msg(format!(
                "error during tpl function execution for {text:?}: {m}"
            ))),
            Err(e) => Err(FuncError::Limit(e)),
        }
    }
}
