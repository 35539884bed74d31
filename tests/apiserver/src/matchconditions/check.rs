//! The part of cel-go's type checker that the apiserver's `matchConditions` validation
//! relies on, over cel-rust's parsed expression (cel-rust has no checker): declared
//! variables (`object`, `oldObject`, `namespaceObject` are `dyn`, `request` is the typed
//! `kubernetes.AdmissionRequest`), the fields of that type, operand types of the logical,
//! comparison, arithmetic, index and `in` operators, and the result type. Functions it
//! does not know are `dyn`. Issues are worded and placed as cel-go's
//! (`ERROR: <input>:L:C: …` with the source line and a caret).

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators};

/// Checks a parsed expression: `Err` carries the apiserver's detail
/// (`compilation failed: ERROR: <input>:1:5: …` or `must evaluate to bool`).
pub fn result_is_bool(source: &str, program: &cel::Program) -> Result<(), String> {
    let mut checker = Checker {
        source,
        program,
        locals: Vec::new(),
        errors: Vec::new(),
    };
    let ty = checker.check(program.expression());
    if !checker.errors.is_empty() {
        return Err(format!("compilation failed: {}", checker.errors.join("\n")));
    }
    if ty != Ty::Bool {
        return Err("must evaluate to bool".into());
    }
    Ok(())
}

/// Static types, as coarse as these checks need.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    List(Box<Ty>),
    Map(Box<Ty>),
    Type,
    Dyn,
    /// A declared object type of the Kubernetes CEL environment (`request`'s).
    Object(&'static str),
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Null => f.write_str("null_type"),
            Ty::List(t) => write!(f, "list({t})"),
            Ty::Map(t) => write!(f, "map(string, {t})"),
            Ty::Type => f.write_str("type"),
            Ty::Dyn => f.write_str("dyn"),
            Ty::Object(name) => f.write_str(name),
        }
    }
}

const REQUEST: &str = "kubernetes.AdmissionRequest";
const GVK: &str = "kubernetes.GroupVersionKind";
const GVR: &str = "kubernetes.GroupVersionResource";
const USER_INFO: &str = "kubernetes.UserInfo";

/// Fields of the declared object types (`BuildRequestType` in the apiserver).
fn field_type(object: &str, field: &str) -> Option<Ty> {
    let string_list = || Ty::List(Box::new(Ty::String));
    Some(match (object, field) {
        (REQUEST, "kind" | "requestKind") => Ty::Object(GVK),
        (REQUEST, "resource" | "requestResource") => Ty::Object(GVR),
        (REQUEST, "subResource" | "requestSubResource" | "name" | "namespace" | "operation") => {
            Ty::String
        }
        (REQUEST, "userInfo") => Ty::Object(USER_INFO),
        (REQUEST, "dryRun") => Ty::Bool,
        (REQUEST, "options") => Ty::Dyn,
        (GVK, "group" | "version" | "kind") | (GVR, "group" | "version" | "resource") => Ty::String,
        (USER_INFO, "username" | "uid") => Ty::String,
        (USER_INFO, "groups") => string_list(),
        (USER_INFO, "extra") => Ty::Map(Box::new(string_list())),
        _ => return None,
    })
}

struct Checker<'a> {
    source: &'a str,
    program: &'a cel::Program,
    /// Comprehension variables in scope, innermost last.
    locals: Vec<(String, Ty)>,
    errors: Vec<String>,
}

impl Checker<'_> {
    /// cel-go's issue format: position, message, the source line and a caret.
    fn error(&mut self, id: u64, message: String) {
        let start = self
            .program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        let before = &self.source[..start.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count();
        let text = self.source.lines().nth(line - 1).unwrap_or("");
        self.errors.push(format!(
            "ERROR: <input>:{line}:{}: {message}\n | {text}\n | {}^",
            column + 1,
            ".".repeat(column)
        ));
    }

    fn no_overload(&mut self, id: u64, function: &str, args: &[Ty]) -> Ty {
        let list: Vec<String> = args.iter().map(Ty::to_string).collect();
        self.error(
            id,
            format!(
                "found no matching overload for '{function}' applied to '({})'",
                list.join(", ")
            ),
        );
        Ty::Dyn
    }

    fn check(&mut self, e: &IdedExpr) -> Ty {
        match &e.expr {
            Expr::Literal(literal) => match literal {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::UInt(_) => Ty::Uint,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Null => Ty::Null,
            },
            Expr::Ident(name) => self.ident(e.id, name),
            Expr::Select(select) => {
                let operand = self.check(&select.operand);
                let field = match operand {
                    Ty::Dyn => Ty::Dyn,
                    Ty::Map(value) => *value,
                    Ty::Object(object) => field_type(object, &select.field).unwrap_or_else(|| {
                        self.error(e.id, format!("undefined field '{}'", select.field));
                        Ty::Dyn
                    }),
                    other => {
                        self.error(
                            e.id,
                            format!("type '{other}' does not support field selection"),
                        );
                        Ty::Dyn
                    }
                };
                if select.test { Ty::Bool } else { field }
            }
            Expr::List(list) => {
                let types: Vec<Ty> = list.elements.iter().map(|x| self.check(x)).collect();
                Ty::List(Box::new(common(&types)))
            }
            Expr::Map(map) => {
                let mut values = Vec::new();
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        self.check(&entry.key);
                        values.push(self.check(&entry.value));
                    }
                }
                Ty::Map(Box::new(common(&values)))
            }
            Expr::Struct(_) | Expr::Unspecified => Ty::Dyn,
            Expr::Comprehension(c) => {
                let range = self.check(&c.iter_range);
                let element = match range {
                    Ty::List(t) => *t,
                    Ty::Map(_) => Ty::String,
                    _ => Ty::Dyn,
                };
                let init = self.check(&c.accu_init);
                self.locals.push((c.iter_var.clone(), element));
                if let Some(second) = &c.iter_var2 {
                    self.locals.push((second.clone(), Ty::Dyn));
                }
                self.locals.push((c.accu_var.clone(), init));
                self.check(&c.loop_cond);
                let step = self.check(&c.loop_step);
                // The accumulator has the step's type (a list for map/filter).
                if let Some(last) = self.locals.last_mut() {
                    last.1 = step;
                }
                let result = self.check(&c.result);
                self.locals
                    .truncate(self.locals.len() - 2 - usize::from(c.iter_var2.is_some()));
                result
            }
            Expr::Call(call) => self.call(e.id, call),
        }
    }

    fn ident(&mut self, id: u64, name: &str) -> Ty {
        if let Some((_, ty)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return ty.clone();
        }
        match name {
            "object" | "oldObject" | "namespaceObject" => Ty::Dyn,
            "request" => Ty::Object(REQUEST),
            "authorizer" => {
                self.error(
                    id,
                    "'authorizer' is not supported by the test API server (it has no CEL authorizer library); match on request.userInfo instead".into(),
                );
                Ty::Dyn
            }
            "bool" | "int" | "uint" | "double" | "string" | "bytes" | "list" | "map"
            | "null_type" | "type" | "dyn" => Ty::Type,
            _ => {
                self.error(
                    id,
                    format!("undeclared reference to '{name}' (in container '')"),
                );
                Ty::Dyn
            }
        }
    }

    fn call(&mut self, id: u64, call: &CallExpr) -> Ty {
        if let Some(target) = &call.target {
            // Member calls (`name.startsWith('x')`): the receiver is checked, not used.
            self.check(target);
        }
        let args: Vec<Ty> = call.args.iter().map(|a| self.check(a)).collect();
        let boolish = |t: &Ty| matches!(t, Ty::Bool | Ty::Dyn);
        let name = call.func_name.as_str();
        match name {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::NOT_STRICTLY_FALSE => {
                if args.iter().all(boolish) {
                    Ty::Bool
                } else {
                    self.no_overload(id, name, &args);
                    Ty::Bool
                }
            }
            operators::EQUALS | operators::NOT_EQUALS => {
                if let [a, b] = args.as_slice()
                    && !comparable(a, b)
                {
                    self.no_overload(id, name, &args);
                }
                Ty::Bool
            }
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => {
                if let [a, b] = args.as_slice()
                    && !(comparable(a, b) || (numeric(a) && numeric(b)))
                {
                    self.no_overload(id, name, &args);
                }
                Ty::Bool
            }
            operators::IN => {
                if let [_, container] = args.as_slice()
                    && !matches!(container, Ty::List(_) | Ty::Map(_) | Ty::Dyn)
                {
                    self.no_overload(id, name, &args);
                }
                Ty::Bool
            }
            operators::INDEX => match args.as_slice() {
                [Ty::List(element), _] | [Ty::Map(element), _] => (**element).clone(),
                [Ty::Dyn, _] => Ty::Dyn,
                _ => self.no_overload(id, name, &args),
            },
            operators::CONDITIONAL => match args.as_slice() {
                [cond, a, b] if boolish(cond) => {
                    if a == b || *b == Ty::Null {
                        a.clone()
                    } else if *a == Ty::Null {
                        b.clone()
                    } else {
                        Ty::Dyn
                    }
                }
                _ => self.no_overload(id, name, &args),
            },
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO => match args.as_slice() {
                [Ty::Dyn, other] | [other, Ty::Dyn] => {
                    if *other == Ty::Dyn {
                        Ty::Dyn
                    } else {
                        other.clone()
                    }
                }
                [a, b] if a == b => a.clone(),
                [Ty::List(_), Ty::List(_)] if name == operators::ADD => Ty::List(Box::new(Ty::Dyn)),
                _ => self.no_overload(id, name, &args),
            },
            operators::NEGATE => args.first().cloned().unwrap_or(Ty::Dyn),
            "size" | "indexOf" | "lastIndexOf" => Ty::Int,
            "startsWith" | "endsWith" | "contains" | "matches" => Ty::Bool,
            "lowerAscii" | "upperAscii" | "trim" | "replace" | "substring" | "join" | "charAt"
            | "string" => Ty::String,
            "split" => Ty::List(Box::new(Ty::String)),
            "int" => Ty::Int,
            "uint" => Ty::Uint,
            "double" => Ty::Double,
            "bool" => Ty::Bool,
            "bytes" => Ty::Bytes,
            "type" => Ty::Type,
            // The optional-chaining helpers and anything else: not known, so `dyn`.
            _ => Ty::Dyn,
        }
    }
}

fn numeric(t: &Ty) -> bool {
    matches!(t, Ty::Int | Ty::Uint | Ty::Double | Ty::Dyn)
}

/// Whether `==` type-checks: same type, or `dyn`/`null` on either side.
fn comparable(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn, _) | (_, Ty::Dyn) | (Ty::Null, _) | (_, Ty::Null) => true,
        (Ty::List(_), Ty::List(_)) | (Ty::Map(_), Ty::Map(_)) => true,
        _ => a == b,
    }
}

/// The element type of a literal list or map: the one type, else `dyn`.
fn common(types: &[Ty]) -> Ty {
    match types.split_first() {
        Some((first, rest)) if rest.iter().all(|t| t == first) => first.clone(),
        _ => Ty::Dyn,
    }
}
