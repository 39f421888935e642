use super::*;
use proptest::prelude::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn policy(max: u32, window: u64) -> Policy {
    Policy {
        max_restarts: max,
        window: Duration::from_secs(window),
        backoff: BackoffSpec { initial_seconds: 5, max_seconds: 300, multiplier: 2.0 },
        startup_timeout: Duration::from_secs(60),
    }
}

fn crash(pod: &str, at: i64) -> Failure {
    Failure { reason: "Error".into(), message: "exit 1".into(), pod: pod.into(), at: Time(t(at)) }
}

fn input(now: i64, failures: Vec<Failure>) -> Input<'static> {
    Input {
        generation: 1,
        reset_token: None,
        failures,
        hung: vec![],
        all_ready: false,
        now: t(now),
        jitter: 0.0,
    }
}

#[test]
fn failures_within_budget_keep_the_circuit_closed() {
    let p = policy(3, 600);
    let mut h = History::default();
    for i in 0..3 {
        let d = step(&p, &h, input(i * 10, vec![crash("a", i * 10)]));
        assert!(d.transitions.is_empty() || i == 0 && d.transitions.is_empty());
        h = d.history;
    }
    assert_eq!(h.failures.len(), 3);
    assert!(!h.circuit_open);
}

#[test]
fn one_failure_too_many_opens_the_circuit() {
    let p = policy(3, 600);
    let mut h = History::default();
    for i in 0..3 {
        h = step(&p, &h, input(i, vec![crash("a", i)])).history;
    }
    let d = step(&p, &h, input(3, vec![crash("a", 3)]));
    assert!(d.history.circuit_open);
    assert_eq!(d.transitions, vec![Transition::BudgetExhausted]);
    // Half-opens when the oldest failure (t=0) leaves the window, not before.
    assert_eq!(resets_at(&p, &d.history), Some(t(600)));
    assert_eq!(d.requeue, Some(Duration::from_secs(597)));
}

#[test]
fn the_circuit_half_opens_when_the_window_slides() {
    let p = policy(1, 100);
    let mut h = History::default();
    h = step(&p, &h, input(0, vec![crash("a", 0)])).history;
    h = step(&p, &h, input(10, vec![crash("a", 10)])).history;
    assert!(h.circuit_open);
    let still = step(&p, &h, input(99, vec![]));
    assert!(still.history.circuit_open);
    let d = step(&p, &still.history, input(100, vec![]));
    assert_eq!(d.transitions, vec![Transition::HalfOpen]);
    assert!(!d.history.circuit_open);
    assert_eq!(d.history.failures.len(), 1, "one more start is allowed, not a clean slate");
    // The next failure opens it again at once.
    let again = step(&p, &d.history, input(101, vec![crash("b", 101)]));
    assert!(again.history.circuit_open);
}

#[test]
fn half_open_also_waits_for_the_backoff() {
    let mut p = policy(0, 10);
    p.backoff = BackoffSpec { initial_seconds: 50, max_seconds: 300, multiplier: 2.0 };
    let h = step(&p, &History::default(), input(0, vec![crash("a", 0)])).history;
    assert!(h.circuit_open);
    assert_eq!(resets_at(&p, &h), Some(t(50)), "backoff (50 s) is later than the window (10 s)");
    assert!(step(&p, &h, input(20, vec![])).history.circuit_open);
    assert!(!step(&p, &h, input(50, vec![])).history.circuit_open);
}

#[test]
fn failures_while_open_are_not_counted() {
    let p = policy(0, 100);
    let h = step(&p, &History::default(), input(0, vec![crash("a", 0)])).history;
    let d = step(&p, &h, input(1, vec![crash("a", 1)]));
    assert_eq!(d.history.failures.len(), 1);
    assert!(d.recorded.is_empty());
}

#[test]
fn hung_pods_are_restarted_with_backoff_and_count() {
    let p = policy(3, 600);
    let mut i = input(0, vec![]);
    i.hung = vec!["a".into(), "b".into()];
    let d = step(&p, &History::default(), i);
    assert_eq!(d.restart, vec!["a".to_string()], "one restart, then the backoff spaces the next");
    assert_eq!(d.recorded[0].reason, "ReadinessTimeout");
    assert_eq!(d.history.backoff_attempt, 1);
    assert_eq!(d.history.next_attempt_at, Some(Time(t(5))));
    assert_eq!(d.requeue, Some(Duration::from_secs(5)));

    let mut i = input(3, vec![]);
    i.hung = vec!["b".into()];
    let waiting = step(&p, &d.history, i.clone());
    assert!(waiting.restart.is_empty());
    i.now = t(5);
    let d2 = step(&p, &d.history, i);
    assert_eq!(d2.restart, vec!["b".to_string()]);
    assert_eq!(d2.history.next_attempt_at, Some(Time(t(15))), "second gap doubles: 10 s");
}

#[test]
fn a_hang_that_exhausts_the_budget_opens_the_circuit_instead_of_restarting() {
    let p = policy(1, 600);
    let h = step(&p, &History::default(), input(0, vec![crash("a", 0)])).history;
    let mut i = input(100, vec![]);
    i.hung = vec!["a".into()];
    let d = step(&p, &h, i);
    assert!(d.restart.is_empty());
    assert!(d.history.circuit_open);
}

#[test]
fn a_clean_run_resets_the_backoff_but_not_the_budget() {
    let p = policy(3, 600);
    let mut i = input(0, vec![]);
    i.hung = vec!["a".into()];
    let h = step(&p, &History::default(), i).history;
    let mut clean = input(30, vec![]);
    clean.all_ready = true;
    let d = step(&p, &h, clean);
    assert_eq!(d.history.backoff_attempt, 0);
    assert_eq!(d.history.next_attempt_at, None);
    assert_eq!(d.history.failures.len(), 1);
}

#[test]
fn a_new_generation_or_reset_annotation_clears_the_history() {
    let p = policy(0, 600);
    let h = step(&p, &History::default(), input(0, vec![crash("a", 0)])).history;
    assert!(h.circuit_open);
    let mut i = input(1, vec![]);
    i.generation = 2;
    let d = step(&p, &h, i);
    assert!(!d.history.circuit_open && d.history.failures.is_empty());
    assert_eq!(d.transitions, vec![Transition::Reset { by_annotation: false }]);

    let mut i = input(1, vec![]);
    i.reset_token = Some("2026-01-01T00:00:00Z");
    let d = step(&p, &h, i.clone());
    assert!(!d.history.circuit_open && d.history.failures.is_empty());
    assert_eq!(d.transitions, vec![Transition::Reset { by_annotation: true }]);
    // The same token again is not a new reset.
    let again = step(&p, &d.history, input(2, vec![crash("a", 2)]));
    let mut i2 = input(3, vec![]);
    i2.reset_token = Some("2026-01-01T00:00:00Z");
    assert!(step(&p, &again.history, i2).history.circuit_open);
}

#[test]
fn first_look_records_the_generation_without_a_reset() {
    let d = step(&policy(3, 600), &History::default(), input(0, vec![]));
    assert_eq!(d.history.generation, Some(1));
    assert!(d.transitions.is_empty());
}

#[derive(Debug, Clone)]
struct Tick {
    advance: u64,
    crashes: usize,
    hung: usize,
    all_ready: bool,
    jitter: f64,
}

fn tick() -> impl Strategy<Value = Tick> {
    (0u64..120, 0usize..3, 0usize..3, any::<bool>(), 0.0f64..1.0).prop_map(
        |(advance, crashes, hung, all_ready, jitter)| Tick { advance, crashes, hung, all_ready, jitter },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Never more than maxRestarts operator-initiated restarts inside any window, whatever happens.
    #[test]
    fn restarts_in_any_window_stay_within_budget(max in 0u32..5, window in 10u64..600, ticks in prop::collection::vec(tick(), 1..80)) {
        let p = policy(max, window);
        let mut h = History::default();
        let mut now = 0i64;
        let mut restarts: Vec<i64> = Vec::new();
        for (n, tk) in ticks.iter().enumerate() {
            now += tk.advance as i64;
            let failures = (0..tk.crashes).map(|i| crash(&format!("p{n}-{i}"), now)).collect();
            let hung = (0..tk.hung).map(|i| format!("h{n}-{i}")).collect();
            let i = Input { generation: 1, reset_token: None, failures, hung, all_ready: tk.all_ready, now: t(now), jitter: tk.jitter };
            let d = step(&p, &h, i);
            restarts.extend(d.restart.iter().map(|_| now));
            // The circuit is open exactly when the window holds more failures than the budget,
            // or it hasn't been allowed to half-open yet.
            if d.history.failures.len() > max as usize { prop_assert!(d.history.circuit_open); }
            h = d.history;
        }
        for &end in &restarts {
            let inside = restarts.iter().filter(|&&r| r > end - window as i64 && r <= end).count();
            prop_assert!(inside <= max as usize, "{inside} restarts in a {window}s window, budget {max}");
        }
    }

    /// The persisted state survives a JSON round trip exactly (what an operator restart relies on).
    #[test]
    fn history_survives_a_json_round_trip(ticks in prop::collection::vec(tick(), 1..30)) {
        let p = policy(2, 300);
        let mut h = History::default();
        let mut now = 0i64;
        for (n, tk) in ticks.iter().enumerate() {
            now += tk.advance as i64;
            let failures = (0..tk.crashes).map(|i| crash(&format!("p{n}-{i}"), now)).collect();
            let hung = (0..tk.hung.min(1)).map(|_| format!("h{n}")).collect();
            let i = Input { generation: 1, reset_token: None, failures, hung, all_ready: tk.all_ready, now: t(now), jitter: tk.jitter };
            h = step(&p, &h, i).history;
            let json = serde_json::to_string(&h).unwrap();
            let back: History = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &h);
        }
    }

    /// A reset always leaves a closed circuit and an empty window.
    #[test]
    fn reset_clears_history(ticks in prop::collection::vec(tick(), 1..30), token in "[a-z0-9]{1,8}") {
        let p = policy(1, 300);
        let mut h = History::default();
        let mut now = 0i64;
        for (n, tk) in ticks.iter().enumerate() {
            now += tk.advance as i64;
            let failures = (0..tk.crashes).map(|i| crash(&format!("p{n}-{i}"), now)).collect();
            h = step(&p, &h, Input { generation: 1, reset_token: None, failures, hung: vec![], all_ready: false, now: t(now), jitter: 0.5 }).history;
        }
        let d = step(&p, &h, Input { generation: 1, reset_token: Some(&token), failures: vec![], hung: vec![], all_ready: false, now: t(now), jitter: 0.5 });
        prop_assert!(!d.history.circuit_open);
        prop_assert!(d.history.failures.is_empty());
        prop_assert_eq!(d.history.backoff_attempt, 0);
    }
}
