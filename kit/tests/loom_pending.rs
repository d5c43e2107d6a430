//! A loom model of the claim of a P's pending word (`PendingPs`, `src/pending.rs`): the very
//! code of `PendingPs` over loom's atomics, with a host whose Ps are all running.
//!
//! - Exactly once: a P at its safe point and the requester serving it on its behalf both
//!   claim its word; `f` runs once for it, and one acknowledgement is made. A claim made by
//!   a load and a store instead of a compare-and-swap fails the model.
//!
//! Not modelled: a server of one round still on its way to its last store as the next round
//! begins (the unit test `the_next_round_begins_while_a_server_finishes_late` runs it). Its
//! last store is a compare-and-swap that races with the next round's mark, and loom 0.7
//! lets a plain store fall between the read and the write of a concurrent compare-and-swap
//! (tokio-rs/loom#254): a model of it fails with the requester reading its own new mark as
//! the older value, an execution no machine allows.

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use safepoint_abi::abi_stable::sabi_trait::TD_Opaque;
use safepoint_abi::abi_stable::std_types::RArc;
use safepoint_abi::{HostRef, PId, PStatus, SafePointFn, SafePointFn_TO, SafePointFnArc};
use safepoint_kit::PendingPs;
use safepoint_loom_model::{FakeHost, ModelWord};

/// A barrier's `f`: counts its calls for P1.
#[derive(Clone)]
struct CountP1(Arc<AtomicU32>);

impl SafePointFn for CountP1 {
    fn call(&self, p: PId) {
        if p == PId(1) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Model {
    host: HostRef,
    pending: PendingPs<ModelWord>,
    /// Acknowledgements so far; the requester sleeps on `acked` for them, as the shipped
    /// strategies sleep on their futex (a spin would only multiply loom's branches).
    acks: Mutex<u32>,
    acked: Condvar,
}

fn model() -> Arc<Model> {
    Arc::new(Model {
        // Two running Ps: P0 is the requester's, P1 the other.
        host: FakeHost::new(vec![PStatus::Running; 2]).host_ref(),
        pending: PendingPs::with_words(2),
        acks: Mutex::new(0),
        acked: Condvar::new(),
    })
}

fn counting_f() -> (Arc<AtomicU32>, SafePointFnArc) {
    let runs = Arc::new(AtomicU32::new(0));
    let f = SafePointFn_TO::from_ptr(RArc::new(CountP1(Arc::clone(&runs))), TD_Opaque);
    (runs, f)
}

impl Model {
    fn acknowledge(&self) {
        *self.acks.lock().unwrap() += 1;
        self.acked.notify_one();
    }

    fn acks(&self) -> u32 {
        *self.acks.lock().unwrap()
    }

    /// P1's M at its safe point (`on_poll`).
    fn p1_polls(&self) {
        self.pending
            .serve_at_safe_point(&self.host, PId(1), || self.acknowledge());
    }

    /// The requester waits for `n` acknowledgements in all.
    fn wait_for_acks(&self, n: u32) {
        let mut acks = self.acks.lock().unwrap();
        while *acks < n {
            acks = self.acked.wait(acks).unwrap();
        }
    }
}

#[test]
fn a_p_and_the_requester_claiming_it_run_f_once_between_them() {
    loom::model(|| {
        let m = model();
        let (runs, f) = counting_f();
        let round = m.pending.begin(&m.host, &f);
        assert_eq!(round.others, [PId(1)]);
        let p1 = {
            let m = Arc::clone(&m);
            loom::thread::spawn(move || m.p1_polls())
        };
        m.pending.serve(&m.host, PId(1), &f, || m.acknowledge());
        m.wait_for_acks(1);
        round.end();
        p1.join().unwrap();
        assert_eq!(runs.load(Ordering::Relaxed), 1, "f ran once for P1");
        assert_eq!(m.acks(), 1, "one acknowledgement");
    });
}
