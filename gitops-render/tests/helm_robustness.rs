//! Hostile template text never panics the engine: it parses and executes, or returns an error.

use gitops_render::helm::funcs::func_map;
use gitops_render::helm::template::{Exec, Limits, Set, parse};
use gitops_render::helm::{Value, yaml};
use proptest::prelude::*;

fn run(src: &str) {
    let funcs = func_map();
    let Ok(parsed) = parse("t", src, &|n| funcs.contains_key(n)) else {
        return;
    };
    let mut set = Set::default();
    set.add(parsed);
    let data = yaml::parse("Values: {a: 1, b: [x, 2.5], c: {d: null}}\n").unwrap_or_default();
    let limits = Limits {
        max_depth: 40,
        ..Limits::default()
    };
    let mut ex = Exec::new(&set, &funcs, limits);
    let _ = ex.execute("t", data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn token_soup_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("{{"), Just("}}"), Just("{{-"), Just("-}}"), Just(" "), Just("."), Just(".Values"),
        Just(".a"), Just(".b"), Just(".c.d"), Just("$"), Just("$x"), Just(":="), Just("="), Just("|"),
        Just("("), Just(")"), Just("\""), Just("\"s\""), Just("1"), Just("-2.5e3"), Just("0x1p3"),
        Just("if"), Just("else"), Just("end"), Just("range"), Just("with"), Just("define"),
        Just("template"), Just("block"), Just("break"), Just("continue"), Just("include"), Just("tpl"),
        Just("printf"), Just("index"), Just("slice"), Just("len"), Just("toYaml"), Just("fromYaml"),
        Just("default"), Just("dict"), Just("list"), Just("set"), Just("trunc"), Just("substr"),
        Just("repeat"), Just("until"), Just("b64dec"), Just("regexFind"), Just("\"[\""), Just("/*"),
        Just("*/"), Just("'a'"), Just("`r`"), Just("nil"), Just("true"), Just("\n"), Just("é"),
    ], 0..30)) {
        run(&parts.concat());
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,80}") {
        run(&src);
    }

    #[test]
    fn yaml_never_panics(src in "[a-z:{}\\[\\],'\" \n&*!|>#-]{0,60}") {
        if let Ok(v) = yaml::parse(&src) {
            let _ = yaml::to_yaml(&v);
            let _ = yaml::to_json(&v);
        }
    }
}

#[test]
fn deep_include_recursion_is_an_error_not_a_crash() {
    let src = r#"{{ define "a" }}{{ include "a" . }}{{ end }}{{ include "a" . }}"#;
    let funcs = func_map();
    let parsed = parse("t", src, &|n| funcs.contains_key(n)).expect("parses");
    let mut set = Set::default();
    set.add(parsed);
    let limits = Limits {
        max_depth: 50,
        ..Limits::default()
    };
    let mut ex = Exec::new(&set, &funcs, limits);
    assert!(ex.execute("t", Value::new_map()).is_err());
}
