//! `--format` Go templates, rendered with `gtmpl`, with the docker CLI's extra functions
//! (`json`, `join`, `upper`, `lower`) and Go's `%v` printing of lists and maps.

use gtmpl::{FuncError, Template, Value};
use std::collections::{BTreeMap, HashMap};

/// serde_json data as template data.
pub fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect::<HashMap<_, _>>())
        }
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::String(s) => s.clone().into(),
        Value::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(serde_json::Value::Null),
        Value::Array(a) => a.iter().map(to_json).collect::<Vec<_>>().into(),
        Value::Map(m) | Value::Object(m) => {
            let sorted: BTreeMap<_, _> = m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
    }
}

/// Go's `%v`.
fn go_print(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Map(m) | Value::Object(m) => {
            let sorted: BTreeMap<_, _> = m.iter().collect();
            format!("map[{}]", sorted.iter().map(|(k, v)| format!("{k}:{}", go_print(v))).collect::<Vec<_>>().join(" "))
        }
        other => other.to_string(),
    }
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args.first().ok_or(FuncError::AtLeastXArgs("json".into(), 1))?;
    Ok(Value::String(serde_json::to_string(&to_json(v)).unwrap_or_default()))
}

fn f_print_go(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(args.last().map(go_print).unwrap_or_default()))
}

fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let (Some(list), Some(sep)) = (args.first(), args.get(1)) else {
        return Err(FuncError::ExactlyXArgs("join".into(), 2));
    };
    let items = match list {
        Value::Array(a) => a.iter().map(go_print).collect::<Vec<_>>(),
        other => vec![go_print(other)],
    };
    Ok(Value::String(items.join(&go_print(sep))))
}

fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(args.first().map(go_print).unwrap_or_default().to_uppercase()))
}

fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(args.first().map(go_print).unwrap_or_default().to_lowercase()))
}

const KEYWORDS: [&str; 11] =
    ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "/*"];

/// Adds `| __print` to every printing action so values print as Go's `%v` would.
fn route_prints(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let action = &rest[start + 2..start + end];
        let (lead, body) = match action.strip_prefix('-') {
            Some(b) if b.starts_with(char::is_whitespace) => ("-", b),
            _ => ("", action),
        };
        let (body, trail) = match body.strip_suffix('-') {
            Some(b) if b.ends_with(char::is_whitespace) => (b, "-"),
            _ => (body, ""),
        };
        let word = body.trim_start().split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
        let is_control = KEYWORDS.contains(&word) || body.trim_start().starts_with("/*");
        let assigns = body.contains(":=") || body.trim_start().starts_with('$') && body.contains(" = ");
        if is_control || assigns || body.trim().is_empty() {
            out.push_str(&rest[start..start + end + 2]);
        } else {
            out.push_str(&format!("{{{{{lead}{body} | __print {trail}}}}}"));
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// A `--format` template that does not parse or render (gtmpl's message inside).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("template: {0}")]
    Render(String),
}

/// Renders `text` with `data`.
pub fn render(text: &str, data: &serde_json::Value) -> Result<String, TemplateError> {
    let mut t = Template::default();
    t.add_funcs(&[
        ("json", f_json as gtmpl::Func),
        ("__print", f_print_go as gtmpl::Func),
        ("join", f_join as gtmpl::Func),
        ("upper", f_upper as gtmpl::Func),
        ("lower", f_lower as gtmpl::Func),
    ]);
    t.parse(route_prints(text)).map_err(|e| TemplateError::Parse(e.to_string()))?;
    t.render(&gtmpl::Context::from(to_value(data))).map_err(|e| TemplateError::Render(e.to_string()))
}

/// Renders `--format` for a list: `table ...` formats get a header (the template rendered
/// with `header`) and aligned columns, as the docker CLI does; `\t` and `\n` written
/// literally on a command line are turned into tab and newline.
pub fn render_rows(
    format: &str,
    header: &serde_json::Value,
    rows: &[serde_json::Value],
) -> Result<Vec<String>, TemplateError> {
    let format = format.replace("\\t", "\t").replace("\\n", "\n");
    let (table, body) = match format.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start().to_owned()),
        None => (false, format.clone()),
    };
    let mut lines = Vec::new();
    if table {
        let mut t = crate::cli::table::TableWriter::new();
        t.row(render(&body, header)?.split('\t').map(str::to_owned).collect::<Vec<_>>());
        for r in rows {
            t.row(render(&body, r)?.split('\t').map(str::to_owned).collect::<Vec<_>>());
        }
        lines = t.lines();
    } else {
        for r in rows {
            lines.push(render(&body, r)?);
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_style_templates() {
        let data = serde_json::json!({"Id": "sha256:ab", "Config": {"Env": ["A=1", "B=2"], "Cmd": null},
            "RootFS": {"Layers": ["sha256:1", "sha256:2"]}});
        assert_eq!(render("{{.Id}}", &data).unwrap(), "sha256:ab");
        assert_eq!(render("{{.Config.Env}}", &data).unwrap(), "[A=1 B=2]");
        assert_eq!(render("{{json .Config}}", &data).unwrap(), r#"{"Cmd":null,"Env":["A=1","B=2"]}"#);
        assert_eq!(render("{{range .RootFS.Layers}}{{.}} {{end}}", &data).unwrap(), "sha256:1 sha256:2 ");
        assert_eq!(render("{{join .Config.Env \",\"}}", &data).unwrap(), "A=1,B=2");
        assert_eq!(render("{{- .Id -}}", &data).unwrap(), "sha256:ab");
        assert!(render("{{.Id", &data).is_err());
    }
}
