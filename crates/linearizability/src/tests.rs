#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

const BUDGET: u64 = 1_000_000;

fn op(client: u64, call: u64, ret: u64, input: Input, output: Output) -> Operation {
    Operation {
        client,
        call,
        ret,
        input,
        outcome: Outcome::Ok(output),
    }
}

fn put(client: u64, call: u64, ret: u64, v: &str) -> Operation {
    op(client, call, ret, Input::Put(v.to_owned()), Output::Put)
}

fn get(client: u64, call: u64, ret: u64, v: Option<&str>) -> Operation {
    op(
        client,
        call,
        ret,
        Input::Get,
        Output::Get(v.map(str::to_owned)),
    )
}

fn del(client: u64, call: u64, ret: u64, deleted: bool) -> Operation {
    op(client, call, ret, Input::Delete, Output::Delete { deleted })
}

fn cas(
    client: u64,
    call: u64,
    ret: u64,
    expect: Option<&str>,
    v: &str,
    succeeded: bool,
) -> Operation {
    op(
        client,
        call,
        ret,
        Input::Cas {
            expect: expect.map(str::to_owned),
            value: v.to_owned(),
        },
        Output::Cas { succeeded },
    )
}

fn unknown(mut o: Operation) -> Operation {
    o.outcome = Outcome::Unknown;
    o
}

fn verdict(ops: &[Operation]) -> Verdict {
    check_operations(ops, BUDGET).unwrap().verdict
}

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    assert_eq!(verdict(&[]), Verdict::Linearizable);
    let h = [
        get(1, 0, 1, None),
        put(1, 2, 3, "a"),
        get(1, 4, 5, Some("a")),
        cas(1, 6, 7, Some("a"), "b", true),
        cas(1, 8, 9, Some("a"), "c", false),
        get(1, 10, 11, Some("b")),
        del(1, 12, 13, true),
        del(1, 14, 15, false),
        get(1, 16, 17, None),
        cas(1, 18, 19, None, "d", true),
        get(1, 20, 21, Some("d")),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn stale_read_after_acknowledged_write_is_rejected() {
    let h = [
        put(1, 0, 10, "a"),
        put(1, 20, 30, "b"),
        // Called after "b" was acknowledged, yet returns "a".
        get(2, 40, 50, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn lost_write_is_rejected() {
    let h = [put(1, 0, 10, "a"), get(2, 20, 30, None)];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn read_of_a_never_written_value_is_rejected() {
    let h = [put(1, 0, 10, "a"), get(2, 5, 30, Some("zzz"))];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn concurrent_overlapping_writes_may_take_either_order() {
    for last in ["a", "b"] {
        let h = [
            put(1, 0, 10, "a"),
            put(2, 5, 15, "b"),
            get(3, 20, 30, Some(last)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable, "last = {last}");
    }
    // But two sequential reads cannot see them in both orders.
    let h = [
        put(1, 0, 10, "a"),
        put(2, 5, 15, "b"),
        get(3, 20, 30, Some("a")),
        get(3, 31, 40, Some("b")),
    ];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for v in [None, Some("a")] {
        let h = [put(1, 0, 10, "a"), get(2, 5, 8, v)];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }
}

#[test]
fn unknown_writes_may_or_may_not_take_effect() {
    // Never observed: fine.
    let h = [unknown(put(1, 0, 10, "a")), get(2, 20, 30, None)];
    assert_eq!(verdict(&h), Verdict::Linearizable);
    // Observed much later: fine too (it may have taken effect at any time after its call).
    let h = [
        unknown(put(1, 0, 10, "a")),
        get(2, 20, 30, None),
        get(2, 1000, 1010, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
    // But not before it was called.
    let h = [get(2, 0, 10, Some("a")), unknown(put(1, 20, 30, "a"))];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
    // And not flickering: seen, then gone, then seen again.
    let h = [
        unknown(put(1, 0, 10, "a")),
        get(2, 20, 30, Some("a")),
        get(2, 40, 50, None),
        get(2, 60, 70, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn compare_and_set_outcomes_must_match_the_state() {
    // Succeeded although the key held "b".
    let h = [put(1, 0, 10, "b"), cas(2, 20, 30, Some("a"), "c", true)];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
    // Create-if-absent twice, both succeeding, sequentially.
    let h = [
        cas(1, 0, 10, None, "a", true),
        cas(2, 20, 30, None, "b", true),
    ];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
    // Concurrently, exactly one may win.
    let h = [
        cas(1, 0, 10, None, "a", true),
        cas(2, 5, 30, None, "b", false),
        get(3, 40, 50, Some("a")),
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn delete_counts_must_match_the_state() {
    let h = [put(1, 0, 10, "a"), del(2, 20, 30, false)];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
    let h = [del(2, 20, 30, true)];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn mismatched_output_is_an_error() {
    let h = [op(1, 0, 1, Input::Get, Output::Put)];
    assert!(matches!(
        check_operations(&h, BUDGET),
        Err(CheckError::Mismatch { index: 0, .. })
    ));
    let h = [get(1, 5, 1, None)];
    assert!(matches!(
        check_operations(&h, BUDGET),
        Err(CheckError::ReturnBeforeCall { .. })
    ));
}

#[test]
fn an_exhausted_budget_answers_unknown() {
    // Many concurrent writes, then two reads that no order of them explains: exponential in
    // the number of writes even with the cache, and the budget is tiny anyway.
    let mut h: Vec<Operation> = (0..20).map(|i| put(i, 0, 100, &format!("v{i}"))).collect();
    h.push(get(99, 200, 300, Some("v0")));
    h.push(get(99, 400, 500, Some("v1")));
    assert_eq!(check_operations(&h, 5).unwrap().verdict, Verdict::Unknown);
}

#[test]
fn a_never_written_value_is_rejected_without_search() {
    let mut h: Vec<Operation> = (0..40).map(|i| put(i, 0, 100, &format!("v{i}"))).collect();
    h.push(get(99, 200, 300, Some("never")));
    let s = check_operations(&h, 10).unwrap();
    assert_eq!(s.verdict, Verdict::NotLinearizable);
    // But the initial value counts as written.
    let h = [get(1, 0, 10, Some("init"))];
    let s = check_operations_from(&h, &Some("init".to_owned()), 10).unwrap();
    assert_eq!(s.verdict, Verdict::Linearizable);
}

#[test]
fn partition_and_check_history_report_per_key() {
    let h = vec![
        ("x", put(1, 0, 10, "a")),
        ("y", put(1, 11, 20, "b")),
        ("x", get(2, 30, 40, Some("a"))),
        ("y", get(2, 41, 50, None)),
    ];
    let reports = check_history(&h, BUDGET).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].key, "x");
    assert_eq!(reports[0].verdict, Verdict::Linearizable);
    assert_eq!(reports[1].key, "y");
    assert_eq!(reports[1].verdict, Verdict::NotLinearizable);
    assert!(!reports[1].minimal.is_empty());
}

#[test]
fn minimize_keeps_the_witness_and_drops_the_rest() {
    // Lots of harmless traffic around a stale read.
    let mut h = Vec::new();
    for i in 0..30u64 {
        h.push(put(1, i * 100, i * 100 + 10, &format!("v{i}")));
        h.push(get(2, i * 100 + 20, i * 100 + 30, Some(&format!("v{i}"))));
    }
    // After v29 is acknowledged, a read returns v3.
    h.push(get(3, 5000, 5010, Some("v3")));
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
    let m = minimize(&h, BUDGET);
    assert_eq!(verdict(&m), Verdict::NotLinearizable);
    assert!(m.len() <= 4, "{m:#?}");
    assert!(
        m.iter()
            .any(|o| o.outcome == Outcome::Ok(Output::Get(Some("v3".into()))))
    );
}

#[test]
fn minimize_leaves_a_linearizable_history_alone() {
    let h = [put(1, 0, 10, "a"), get(2, 20, 30, Some("a"))];
    assert_eq!(minimize(&h, BUDGET), h.to_vec());
}

/// One step of a random sequential execution.
#[derive(Clone, Debug)]
enum Gen {
    Get,
    Put,
    Delete,
    /// Compare with the value written `back` puts ago (or absence when there is none).
    Cas(usize),
}

fn gen_op() -> impl Strategy<Value = Gen> {
    prop_oneof![
        3 => Just(Gen::Get),
        3 => Just(Gen::Put),
        1 => Just(Gen::Delete),
        2 => (0usize..3).prop_map(Gen::Cas),
    ]
}

/// Runs `gens` sequentially on the model: operation `i` takes effect at time `10 * i + 5`,
/// and is given a call and return widened around that point by `widen`. Some outcomes are
/// replaced by unknown.
fn sequential_history(gens: &[Gen], widen: &[(u64, u64, bool)]) -> Vec<Operation> {
    let mut state: Option<Value> = None;
    let mut written: Vec<Value> = Vec::new();
    let mut out = Vec::new();
    for (i, (g, &(before, after, unknown))) in gens.iter().zip(widen).enumerate() {
        let at = 10 * i as u64 + 1000;
        let (input, output) = match g {
            Gen::Get => (Input::Get, Output::Get(state.clone())),
            Gen::Put => {
                let v = format!("v{i}");
                written.push(v.clone());
                state = Some(v.clone());
                (Input::Put(v), Output::Put)
            }
            Gen::Delete => {
                let deleted = state.take().is_some();
                (Input::Delete, Output::Delete { deleted })
            }
            Gen::Cas(back) => {
                let expect = written.iter().rev().nth(*back).cloned();
                let value = format!("v{i}");
                let succeeded = expect == state;
                if succeeded {
                    written.push(value.clone());
                    state = Some(value.clone());
                }
                (Input::Cas { expect, value }, Output::Cas { succeeded })
            }
        };
        out.push(Operation {
            client: i as u64 % 5,
            call: at - before,
            ret: at + after,
            input,
            outcome: if unknown {
                Outcome::Unknown
            } else {
                Outcome::Ok(output)
            },
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn sequential_executions_with_widened_intervals_are_linearizable(
        gens in prop::collection::vec(gen_op(), 1..40),
        widen in prop::collection::vec((0u64..40, 0u64..40, prop::bool::weighted(0.1)), 40),
        rotate in 0usize..40,
    ) {
        let mut h = sequential_history(&gens, &widen);
        let r = rotate % h.len();
        h.rotate_left(r);
        prop_assert_eq!(check_operations(&h, 10_000_000).unwrap().verdict, Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_never_written_value_is_always_rejected(
        gens in prop::collection::vec(gen_op(), 1..40),
        widen in prop::collection::vec((0u64..40, 0u64..40, prop::bool::weighted(0.1)), 40),
        which in 0usize..40,
    ) {
        let mut h = sequential_history(&gens, &widen);
        let i = which % h.len();
        h[i].input = Input::Get;
        h[i].outcome = Outcome::Ok(Output::Get(Some("never written".to_owned())));
        let s = check_operations(&h, 10_000_000).unwrap();
        prop_assert_eq!(s.verdict, Verdict::NotLinearizable);
        let m = minimize(&h, 10_000_000);
        prop_assert_eq!(check_operations(&m, 10_000_000).unwrap().verdict, Verdict::NotLinearizable);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Without overlap the history has one order only: a read changed to return a value that
    /// was written before but is not the current one is a stale read, always rejected, and
    /// found by the search itself (the value was written, so no shortcut applies).
    #[test]
    fn a_stale_read_in_a_sequential_history_is_always_rejected(
        gens in prop::collection::vec(gen_op(), 2..40),
        which in 0usize..40,
        back in 0usize..40,
    ) {
        let widen = vec![(0u64, 0u64, false); gens.len()];
        let mut h = sequential_history(&gens, &widen);
        // Values written before each operation, and the state it saw.
        let mut written: Vec<Value> = Vec::new();
        let mut stale = None;
        let start = which % h.len();
        for (i, op) in h.iter().enumerate() {
            if i >= start && stale.is_none() {
                let current = match &op.outcome {
                    Outcome::Ok(Output::Get(v)) => Some(v.clone()),
                    _ => None,
                };
                if let Some(current) = current {
                    let older: Vec<&Value> =
                        written.iter().filter(|v| Some(*v) != current.as_ref()).collect();
                    if !older.is_empty() {
                        stale = Some((i, older[back % older.len()].clone()));
                    }
                }
            }
            match (&op.input, &op.outcome) {
                (Input::Put(v), _) | (Input::Cas { value: v, .. }, Outcome::Ok(Output::Cas { succeeded: true })) => {
                    written.push(v.clone());
                }
                _ => {}
            }
        }
        prop_assume!(stale.is_some());
        if let Some((i, v)) = stale {
            h[i].outcome = Outcome::Ok(Output::Get(Some(v)));
        }
        let s = check_operations(&h, 10_000_000).unwrap();
        prop_assert_eq!(s.verdict, Verdict::NotLinearizable);
        prop_assert!(s.steps > 0);
    }
}
