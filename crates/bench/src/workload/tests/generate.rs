use std::collections::HashSet;

use crate::workload::{GeneratorSpec, MultiTurn, ShareGpt, SharedPrefix, Workload, load};

fn shared_prefix(groups: u32, requests: u32) -> SharedPrefix {
    SharedPrefix {
        groups,
        prefix: 100,
        suffix: 20,
        output: 7,
        requests,
    }
}

#[test]
fn shared_prefix_requests_share_exactly_their_groups_prefix() {
    let w = shared_prefix(4, 200).generate(1);
    assert_eq!(w.requests.len(), 200);
    let prefixes: HashSet<&[u32]> = w.requests.iter().map(|r| &r.prompt[..100]).collect();
    assert_eq!(prefixes.len(), 4, "every group is used, no others exist");
    let suffixes: HashSet<&[u32]> = w.requests.iter().map(|r| &r.prompt[100..]).collect();
    assert_eq!(suffixes.len(), 200, "suffixes are unique");
    for (i, r) in w.requests.iter().enumerate() {
        assert_eq!(
            (r.id, r.prompt.len(), r.output_tokens, r.at_s),
            (i as u64, 120, 7, 0.0)
        );
        assert!(r.session.is_none());
    }
}

#[test]
fn generators_are_deterministic_and_stable_under_more_requests() {
    assert_eq!(
        shared_prefix(4, 50).generate(9),
        shared_prefix(4, 50).generate(9)
    );
    assert_ne!(
        shared_prefix(4, 50).generate(9),
        shared_prefix(4, 50).generate(10)
    );
    let more = shared_prefix(4, 80).generate(9);
    assert_eq!(
        shared_prefix(4, 50).generate(9).requests[..],
        more.requests[..50]
    );
    let spec = MultiTurn {
        sessions: 3,
        ..MultiTurn::default()
    };
    assert_eq!(spec.generate(5), spec.generate(5));
}

/// Turn k's prompt is turn k−1's prompt, then a reply of turn k−1's output length, then the
/// new user words: exactly what a chat client resends.
fn assert_sessions_grow(w: &Workload, user: Option<usize>) {
    for pair in w.requests.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let (Some(a), Some(b)) = (prev.session, next.session) else {
            panic!("not a session")
        };
        if a.session != b.session {
            assert_eq!(b.turn, 0);
            assert_eq!(b.think_s, 0.0);
            continue;
        }
        assert_eq!(b.turn, a.turn + 1);
        assert!(b.think_s >= 0.0);
        assert!(
            next.prompt.starts_with(&prev.prompt),
            "turn {} drops history",
            b.turn
        );
        let added = next.prompt.len() - prev.prompt.len();
        let reply = prev.output_tokens as usize;
        match user {
            Some(user) => assert_eq!(added, reply + user),
            None => assert!(added > reply),
        }
    }
}

#[test]
fn multi_turn_prompts_grow_by_reply_and_user_turn() {
    let spec = MultiTurn {
        sessions: 6,
        turns: 4,
        system: 50,
        systems: 2,
        context: 0,
        user: 10,
        output: 8,
        think: 2.0,
    };
    let w = spec.generate(3);
    assert_eq!(w.requests.len(), 24);
    assert_sessions_grow(&w, Some(10));
    let first_turns: Vec<_> = w.requests.iter().filter(|r| r.prompt.len() == 60).collect();
    assert_eq!(first_turns.len(), 6);
    let systems: HashSet<&[u32]> = first_turns.iter().map(|r| &r.prompt[..50]).collect();
    assert_eq!(systems.len(), 2, "sessions share their system prompt");
    let last = &w.requests[3];
    assert_eq!(last.prompt.len(), 50 + 4 * 10 + 3 * 8);
    let thinks: Vec<f64> = w
        .requests
        .iter()
        .filter_map(|r| r.session)
        .filter(|t| t.turn > 0)
        .map(|t| t.think_s)
        .collect();
    let mean = thinks.iter().sum::<f64>() / thinks.len() as f64;
    assert!(
        thinks.iter().all(|t| *t > 0.0) && mean > 0.5 && mean < 6.0,
        "mean think {mean}"
    );
}

/// Each session's context follows the shared system prompt, is its own, and stays in every
/// later turn; `context=0` is the workload without it, word for word.
#[test]
fn multi_turn_context_is_per_session_and_kept() {
    let base = MultiTurn {
        sessions: 3,
        turns: 3,
        system: 20,
        systems: 1,
        context: 0,
        user: 4,
        output: 2,
        think: 0.0,
    };
    let spec = MultiTurn {
        context: 30,
        ..base.clone()
    };
    let (w, plain) = (spec.generate(4), base.generate(4));
    assert_sessions_grow(&w, Some(4));
    let firsts: Vec<_> = w
        .requests
        .iter()
        .filter(|r| r.session.is_some_and(|t| t.turn == 0))
        .collect();
    assert_eq!(firsts.len(), 3);
    assert!(firsts.iter().all(|r| r.prompt.len() == 20 + 30 + 4));
    assert!(
        firsts
            .iter()
            .all(|r| r.prompt[..20] == firsts[0].prompt[..20]),
        "system shared"
    );
    let contexts: HashSet<&[u32]> = firsts.iter().map(|r| &r.prompt[20..50]).collect();
    assert_eq!(contexts.len(), 3, "each session has its own context");
    for (a, b) in w.requests.iter().zip(&plain.requests) {
        assert_eq!(a.prompt[..20], b.prompt[..20]);
        assert_eq!(
            a.prompt[50..],
            b.prompt[20..],
            "the rest is the workload without context"
        );
    }
    let spec = "multi-turn:sessions=3,turns=3,system=20,context=30,user=4,output=2,think=0";
    assert_eq!(load(spec, 4).expect("spec loads"), w);
}

#[test]
fn load_runs_generator_specs() {
    let w = load(
        "shared-prefix:groups=2,prefix=16,suffix=4,output=3,requests=10",
        1,
    )
    .expect("spec loads");
    assert_eq!(w.requests.len(), 10);
    assert!(
        w.requests
            .iter()
            .all(|r| r.prompt.len() == 20 && r.output_tokens == 3)
    );
    let w = load(
        "multi-turn:sessions=2,turns=3,system=8,user=4,output=2,think=0",
        1,
    )
    .expect("spec loads");
    assert_eq!(w.requests.len(), 6);
    assert!(
        w.requests
            .iter()
            .all(|r| r.session.is_some_and(|t| t.think_s == 0.0))
    );
    assert_eq!(
        load("shared-prefix", 1).expect("defaults").requests.len(),
        400
    );
}

const SHAREGPT: &str = r#"[
  {"id": "a", "conversations": [
    {"from": "human", "value": "Hello there, how are you today?"},
    {"from": "gpt", "value": "I am fine, thanks for asking."},
    {"from": "human", "value": "Tell me a story."},
    {"from": "gpt", "value": "Once upon a time there was an extraordinarily long word."}
  ]},
  {"id": "b", "conversations": [{"from": "human", "value": "no answer"}]},
  {"id": "c", "conversations": [
    {"from": "human", "value": "Hello there, how are you today?"},
    {"from": "gpt", "value": "Good."}
  ]}
]"#;

fn sharegpt(all_turns: bool) -> ShareGpt {
    let spec: GeneratorSpec = if all_turns {
        "sharegpt:path=x.json,turns=all,think=0.5".parse()
    } else {
        "sharegpt:x.json".parse()
    }
    .expect("spec parses");
    let GeneratorSpec::ShareGpt(spec) = spec else {
        panic!("not sharegpt")
    };
    spec
}

#[test]
fn sharegpt_first_turns_keep_equal_text_equal() {
    let w = sharegpt(false).build(SHAREGPT, 4).expect("parses");
    assert_eq!(
        w.requests.len(),
        2,
        "the unanswered conversation is left out"
    );
    let (a, c) = (&w.requests[0], &w.requests[1]);
    assert_eq!(a.prompt, c.prompt, "equal text, equal prompt");
    assert_eq!(a.prompt.len(), 6);
    assert_eq!(
        (a.output_tokens, c.output_tokens),
        (7, 1),
        "\"asking.\" is two ids"
    );
    assert!(a.session.is_none());
}

#[test]
fn sharegpt_all_turns_become_growing_sessions() {
    let w = sharegpt(true).build(SHAREGPT, 4).expect("parses");
    assert_eq!(w.requests.len(), 3);
    assert_sessions_grow(&w, None);
    let sessions: Vec<_> = w
        .requests
        .iter()
        .filter_map(|r| r.session)
        .map(|t| (t.session, t.turn))
        .collect();
    assert_eq!(sessions, [(0, 0), (0, 1), (1, 0)]);
    // "extraordinarily" is 15 characters: one id plus two more.
    assert_eq!(w.requests[1].output_tokens, 12);
}

#[test]
fn sharegpt_errors_name_the_line() {
    let broken = "[\n {\"conversations\": [\n  {\"from\": \"human\"}, oops\n ]}\n]";
    let error = sharegpt(false).build(broken, 1).expect_err("broken JSON");
    assert!(error.to_string().starts_with("line 3:"), "{error}");
}

#[test]
fn synthetic_lengths_have_the_asked_moments_and_are_stable() {
    use crate::workload::Synthetic;
    let g = Synthetic {
        requests: 4000,
        ..Synthetic::default()
    };
    let w = g.generate(5);
    let n = w.requests.len() as f64;
    let mean_in = w
        .requests
        .iter()
        .map(|r| r.prompt.len() as f64)
        .sum::<f64>()
        / n;
    let mean_out = w
        .requests
        .iter()
        .map(|r| f64::from(r.output_tokens))
        .sum::<f64>()
        / n;
    // Clipping at 1 token lifts the means a little above 1024 and 43.
    assert!((1000.0..1120.0).contains(&mean_in), "{mean_in}");
    assert!((42.0..52.0).contains(&mean_out), "{mean_out}");
    assert!(
        w.requests
            .iter()
            .all(|r| !r.prompt.is_empty() && r.output_tokens >= 1)
    );
    // Prefix stability: the first requests do not depend on how many there are.
    let small = Synthetic {
        requests: 10,
        ..g.clone()
    }
    .generate(5);
    assert_eq!(small.requests[..], w.requests[..10]);
    let capped = Synthetic { max_len: 512, ..g }.generate(5);
    assert!(
        capped
            .requests
            .iter()
            .all(|r| r.prompt.len() as u32 + r.output_tokens <= 512)
    );
    assert_eq!(
        "synthetic:requests=3,prompt=8,prompt_std=0,output=2,output_std=0"
            .parse::<crate::workload::GeneratorSpec>()
            .map(|_| ()),
        Ok(())
    );
}
