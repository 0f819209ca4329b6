//! Lowering through the public library API: ARG scoping, ENV/ARG precedence, stage references,
//! `--target` pruning, step numbering and how cache keys react to changes.

use std::collections::BTreeMap;

use rbuild::frontend::instructions::Instruction;
use rbuild::frontend::lower::{parse_and_lower, LowerOptions, Platform};
use rbuild::plan::{explain_miss, BuildPlan, Dependency, StageBase};

fn plan(text: &str) -> BuildPlan {
    plan_with(text, &[], None)
}

fn plan_with(text: &str, args: &[(&str, &str)], target: Option<&str>) -> BuildPlan {
    let opts = LowerOptions {
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        target: target.map(str::to_string),
        ..LowerOptions::default()
    };
    match parse_and_lower(text, "Dockerfile", &opts) {
        Ok(p) => p,
        Err(e) => panic!("lowering failed:\n{}", e.render()),
    }
}

fn canonical(plan: &BuildPlan) -> Vec<String> {
    plan.planned_stages().flat_map(|s| s.steps.iter().map(|st| st.canonical.clone())).collect()
}

#[test]
fn global_args_reach_from_only_until_redeclared() {
    let p = plan("ARG BASE=busybox\nARG V=1\nFROM $BASE\nRUN echo $V\nARG V\nRUN echo $V\nCOPY a /$V/\n");
    let steps = &p.stages[0].steps;
    assert_eq!(steps[0].canonical, "FROM busybox");
    assert!(steps[1].build_args.is_empty(), "V is not declared in the stage yet");
    assert_eq!(steps[3].build_args, BTreeMap::from([("V".to_string(), "1".to_string())]));
    assert_eq!(steps[4].canonical, "COPY a /1/");
    assert_eq!(p.global_args.get("V"), Some(&Some("1".to_string())));
}

#[test]
fn build_arg_overrides_default_and_misses_from_first_use() {
    let text = "FROM busybox\nENV A=1\nARG VERSION=1.0\nENV B=2\nRUN echo $VERSION\nRUN true\n";
    let before = plan(text);
    let after = plan_with(text, &[("VERSION", "2.0")], None);
    let (b, a) = (&before.stages[0].steps, &after.stages[0].steps);
    // FROM, ENV A, ARG, ENV B do not use the value: same keys.
    for i in 0..4 {
        assert_eq!(b[i].cache_key, a[i].cache_key, "step {} should hit", i + 1);
    }
    assert_ne!(b[4].cache_key, a[4].cache_key);
    let reason = explain_miss(&b[4].key_inputs, &a[4].key_inputs).expect("a miss");
    assert_eq!(reason.to_string(), "build arg changed: VERSION");
    assert_ne!(b[5].cache_key, a[5].cache_key, "every later step misses too");
}

#[test]
fn env_beats_arg_and_env_line_sees_previous_values() {
    let p = plan(
        "FROM busybox\nARG X=fromarg\nENV X=fromenv\nWORKDIR /$X\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
    );
    let c = canonical(&p);
    assert_eq!(c[3], "WORKDIR /fromenv");
    assert_eq!(c[5], "ENV abc=bye def=hello");
    assert_eq!(c[6], "ENV ghi=bye");
}

#[test]
fn refreshed_at_bump_changes_that_step_and_all_later() {
    let text = |date: &str| {
        format!("FROM busybox\nMAINTAINER me\nENV REFRESHED_AT {date}\nRUN echo hi > /x\nCOPY a b\nCMD [\"sh\"]\n")
    };
    let old = plan(&text("2016-11-09"));
    let new = plan(&text("2016-11-10"));
    let (o, n) = (&old.stages[0].steps, &new.stages[0].steps);
    assert_eq!(o[0].cache_key, n[0].cache_key);
    assert_eq!(o[1].cache_key, n[1].cache_key);
    for i in 2..o.len() {
        assert_ne!(o[i].cache_key, n[i].cache_key, "step {} must rerun", i + 1);
    }
    assert_eq!(
        explain_miss(&o[2].key_inputs, &n[2].key_inputs).map(|r| r.to_string()),
        Some("instruction changed: ENV REFRESHED_AT=2016-11-09 -> ENV REFRESHED_AT=2016-11-10".to_string())
    );
    assert_eq!(
        explain_miss(&o[3].key_inputs, &n[3].key_inputs).map(|r| r.to_string()),
        Some("parent step missed".into())
    );
    // Identical text: identical keys.
    assert_eq!(old, plan(&text("2016-11-09")));
}

#[test]
fn stages_dependencies_target_and_numbering() {
    let text = "FROM busybox AS base\nRUN a\nFROM base AS build\nRUN b\nFROM alpine AS unused\nRUN c\nFROM scratch\nCOPY --from=build /x /x\nCOPY --from=0 /y /y\nCOPY --from=nginx:latest /z /z\n";
    let p = plan(text);
    assert_eq!(p.stages.len(), 4);
    assert_eq!(p.target, 3);
    assert_eq!(p.needed, vec![true, true, false, true]);
    assert_eq!(p.stages[1].base, StageBase::Stage { index: 0 });
    assert_eq!(p.stages[3].base, StageBase::Scratch);
    assert_eq!(
        p.stages[3].dependencies,
        vec![
            Dependency::Stage { index: 0 },
            Dependency::Stage { index: 1 },
            Dependency::Image { reference: "nginx:latest".into() }
        ]
    );
    assert_eq!(p.step_count(), 2 + 2 + 4);
    let numbers: Vec<usize> = p.planned_stages().flat_map(|s| s.steps.iter().map(|st| st.number)).collect();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());

    let only_base = plan_with(text, &[], Some("BASE"));
    assert_eq!(only_base.needed, vec![true, false, false, false]);
    assert_eq!(only_base.step_count(), 2);
}

#[test]
fn a_stage_key_follows_the_stage_it_copies_from() {
    let a = plan("FROM busybox AS build\nRUN echo 1\nFROM scratch\nCOPY --from=build /x /x\n");
    let b = plan("FROM busybox AS build\nRUN echo 2\nFROM scratch\nCOPY --from=build /x /x\n");
    assert_ne!(a.stages[1].steps[1].cache_key, b.stages[1].steps[1].cache_key);
    assert_eq!(a.stages[1].steps[0].cache_key, b.stages[1].steps[0].cache_key);
}

#[test]
fn stage_reference_errors() {
    let later = parse_and_lower(
        "FROM busybox\nCOPY --from=late /a /a\nFROM busybox AS late\n",
        "Dockerfile",
        &LowerOptions::default(),
    )
    .unwrap_err();
    assert!(later.message.contains("defined after"), "{}", later.message);
    assert_eq!((later.line, later.column), (2, 13));
    let index =
        parse_and_lower("FROM busybox\nCOPY --from=3 /a /a\n", "Dockerfile", &LowerOptions::default()).unwrap_err();
    assert!(index.message.contains("invalid stage index 3"), "{}", index.message);
    let dup = parse_and_lower("FROM a AS x\nFROM b AS X\n", "Dockerfile", &LowerOptions::default()).unwrap_err();
    assert!(dup.message.contains("duplicate stage name"), "{}", dup.message);
    let target = parse_and_lower(
        "FROM a AS x\n",
        "Dockerfile",
        &LowerOptions { target: Some("nope".into()), ..LowerOptions::default() },
    )
    .unwrap_err();
    assert!(target.message.contains("target stage \"nope\" could not be found"), "{}", target.message);
}

#[test]
fn only_arg_may_precede_from() {
    let e = parse_and_lower("ENV A=1\nFROM busybox\n", "Dockerfile", &LowerOptions::default()).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.message.contains("only ARG may come before FROM"), "{}", e.message);
}

#[test]
fn automatic_platform_args() {
    let p = plan(
        "FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH\nARG TARGETOS\nRUN echo $TARGETOS/$TARGETARCH\n",
    );
    let native = Platform::native();
    assert_eq!(p.stages[0].platform.as_deref(), Some(native.to_string().as_str()));
    let run = &p.stages[0].steps[3];
    assert_eq!(run.build_args.get("TARGETARCH"), Some(&native.arch));
    assert_eq!(run.build_args.get("TARGETOS"), Some(&"linux".to_string()));
}

#[test]
fn unconsumed_build_args_warn_like_docker() {
    let p =
        plan_with("FROM busybox\nARG USED\nRUN true\n", &[("USED", "1"), ("EXTRA", "2"), ("HTTP_PROXY", "x")], None);
    assert_eq!(p.unconsumed_build_args, vec!["EXTRA".to_string()]);
    assert!(p.warnings.iter().any(|w| w == "[Warning] One or more build-args [EXTRA] were not consumed"));
    let run = &p.stages[0].steps[2];
    assert!(!run.build_args.contains_key("HTTP_PROXY"), "proxy args stay out of the cache key");
}

#[test]
fn mandatory_variable_error_points_at_the_word() {
    let e = parse_and_lower("FROM busybox\nWORKDIR ${DIR:?set DIR first}\n", "Dockerfile", &LowerOptions::default())
        .unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.column >= 9, "column {} should be inside the word", e.column);
    assert!(e.message.contains("set DIR first"), "{}", e.message);
}

#[test]
fn expose_ports_are_split_and_checked() {
    let p = plan("FROM busybox\nARG PORTS=\"80 443/tcp\"\nEXPOSE $PORTS 53/udp\n");
    let Instruction::Expose { ports } = &p.stages[0].steps[2].instruction else { panic!("not EXPOSE") };
    assert_eq!(ports, &["80", "443/tcp", "53/udp"]);
    let e = parse_and_lower("FROM busybox\nEXPOSE 80/xyz\n", "Dockerfile", &LowerOptions::default()).unwrap_err();
    assert!(e.message.contains("invalid protocol"), "{}", e.message);
}

#[test]
fn heredoc_bodies_enter_the_cache_key() {
    let a = plan("FROM busybox\nRUN <<EOF\necho one\nEOF\n");
    let b = plan("FROM busybox\nRUN <<EOF\necho two\nEOF\n");
    assert_ne!(a.stages[0].steps[1].cache_key, b.stages[0].steps[1].cache_key);
}

#[test]
fn escape_directive_applies_to_expansion() {
    let p = plan("# escape=`\nFROM busybox\nENV A=x`$B\n");
    assert_eq!(p.stages[0].steps[1].canonical, "ENV A=\"x\\$B\"");
}

#[test]
fn a_self_doubling_variable_stops_with_the_line_that_overflows() {
    // 16 bytes doubled 16 times is exactly the limit (1 MiB); the 17th doubling is one too many.
    let text = format!("FROM busybox\nENV A=0123456789abcdef\n{}", "ENV A=${A}${A}\n".repeat(40));
    let error = match parse_and_lower(&text, "Dockerfile", &LowerOptions::default()) {
        Ok(_) => panic!("a 2^40-fold expansion was accepted"),
        Err(e) => e,
    };
    assert_eq!((error.file.as_str(), error.line), ("Dockerfile", 19), "{}", error.render());
    assert!(error.headline().starts_with("Dockerfile:19:"), "{}", error.headline());
    assert!(error.message.contains("variable expansion is too long"), "{}", error.message);
}
