use super::*;

fn roundtrip(text: &str) -> String {
    let docs = parse_stream(text).expect("valid yaml");
    docs.iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}

#[test]
fn resolves_plain_scalars_like_go_yaml_v3() {
    let docs = parse_stream(
        "a: 012\nb: 0x1F\nc: yes\nd: on\ne: ~\nf: 1.0\ng: 1e3\nh: \"1\"\ni: 2001-12-14\n",
    )
    .expect("valid");
    let m = docs[0].as_map().expect("map");
    assert_eq!(m["a"], Value::Int(10));
    assert_eq!(m["b"], Value::Int(31));
    assert_eq!(m["c"], Value::Str("yes".into()));
    assert_eq!(m["d"], Value::Str("on".into()));
    assert_eq!(m["e"], Value::Null);
    assert_eq!(m["f"], Value::Float(1.0));
    assert_eq!(m["g"], Value::Float(1000.0));
    assert_eq!(m["h"], Value::Str("1".into()));
    assert_eq!(m["i"], Value::Str("2001-12-14T00:00:00Z".into()));
}

#[test]
fn emits_like_kustomize() {
    // Expected text produced by `kubectl kustomize` (kustomize v5.5.0) for the same data.
    let input = "z: \"1\"\na10: y\na2: y\nA: x\n_b: x\n-c: x\nyes: yes\nn: ~\ne: \"\"\nf: 1.0\nf2: 1.5\nml: \"line1\\nline2\\n\"\nml2: \"line1\\nline2\"\nml3: \"line1 \\nline2\"\ncolon: \"a: b\"\nstar: \"*x\"\ntab: \"a\\tb\"\nlist:\n- a\n- b: 1\n  c: 2\n- - x\nem: []\nlong: \"aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo pppp qqqq rrrr\"\n";
    let want = "-c: x\n_b: x\nA: x\na2: \"y\"\na10: \"y\"\ncolon: 'a: b'\ne: \"\"\nem: []\nf: 1\nf2: 1.5\nlist:\n- a\n- b: 1\n  c: 2\n- - x\nlong: aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo pppp\n  qqqq rrrr\nml: |\n  line1\n  line2\nml2: |-\n  line1\n  line2\nml3: \"line1 \\nline2\"\n\"n\": null\nstar: '*x'\ntab: \"a\\tb\"\n\"yes\": \"yes\"\nz: \"1\"\n";
    assert_eq!(roundtrip(input), want);
}

#[test]
fn floats_format_like_go() {
    assert_eq!(emit::format_float(1.5), "1.5");
    assert_eq!(emit::format_float(1234567.5), "1.2345675e+06");
    assert_eq!(emit::format_float(0.000001), "1e-06");
    assert_eq!(
        emit::format_float(1.2345678901234569e23),
        "1.2345678901234569e+23"
    );
    assert_eq!(emit::format_float(3.0), "3");
}

#[test]
fn alias_bomb_is_bounded() {
    let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        s.push_str(&format!(
            "a{i}: &a{i} [*a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}]\n",
            p(i),
            p(i),
            p(i),
            p(i),
            p(i),
            p(i),
            p(i),
            p(i),
            p(i),
            p(i)
        ));
    }
    fn p(i: usize) -> String {
        if i == 1 {
            String::new()
        } else {
            (i - 1).to_string()
        }
    }
    assert!(matches!(parse_stream(&s), Err(YamlError::TooLarge { .. })));
}

#[test]
fn syntax_errors_name_the_line() {
    let err = parse_stream("a: b\nc: [d\n").expect_err("invalid");
    assert!(
        matches!(err, YamlError::Syntax { line, .. } if line >= 2),
        "{err:?}"
    );
    let err = parse_stream("a: 1\na: 2\n").expect_err("duplicate");
    assert!(
        matches!(err, YamlError::DuplicateKey { line: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn merge_keys_and_anchors() {
    let docs = parse_stream("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n").expect("valid");
    assert_eq!(
        to_yaml(&docs[0]),
        "base:\n  x: 1\n  \"y\": 2\nd:\n  x: 1\n  \"y\": 3\n"
    );
}

mod roundtrip {
    use super::{Value, parse_stream, to_yaml};
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            "[ -~\\n\\t]{0,40}".prop_map(Value::Str),
            "(yes|no|on|off|y|n|true|null|~|012|0x1f|1e3|1.5|-|- a|a: b|#x|a #b| a|a |'q'|\"d\"|---)".prop_map(Value::Str),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Seq),
                prop::collection::vec(("[a-zA-Z0-9_./-]{1,12}|yes|on|1|", inner), 0..5)
                    .prop_map(|kv| Value::Map(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn emitted_yaml_reads_back_as_the_same_data(v in value()) {
            let doc = Value::Map([("root".to_string(), v)].into_iter().collect());
            let text = to_yaml(&doc);
            let back = parse_stream(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(back.len(), 1);
            prop_assert_eq!(&back[0], &doc, "text was:\n{}", text);
        }
    }
}
