//! A fake host: Ps with statuses the test sets, the caller's P is P0.

use std::sync::{Arc, Mutex};

use safepoint_abi::abi_stable::sabi_trait::TD_Opaque;
use safepoint_abi::abi_stable::std_types::{RArc, ROption, RStr};
use safepoint_abi::{
    ABI_VERSION, AbiVersion, Host, Host_TO, HostRef, LogLevel, OsThread, PId, PStatus,
};

/// Ps with the statuses given, P0 the caller's. An idle P can be stopped (`GcStop`) and
/// released; arms and disarms are recorded. Its locks are std's and hold no loom operation,
/// so a loom model may use it.
#[derive(Clone)]
pub struct FakeHost {
    status: Arc<Mutex<Vec<PStatus>>>,
    armed: Arc<Mutex<Vec<bool>>>,
}

impl FakeHost {
    /// A host of `status.len()` Ps, with these statuses.
    pub fn new(status: Vec<PStatus>) -> FakeHost {
        let armed = vec![false; status.len()];
        FakeHost {
            status: Arc::new(Mutex::new(status)),
            armed: Arc::new(Mutex::new(armed)),
        }
    }

    /// The handle a strategy gets.
    pub fn host_ref(&self) -> HostRef {
        Host_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// Which Ps are armed now.
    pub fn armed(&self) -> Vec<bool> {
        self.armed.lock().unwrap().clone()
    }
}

impl Host for FakeHost {
    fn procs(&self) -> u32 {
        self.status.lock().unwrap().len() as u32
    }
    fn p_status(&self, p: PId) -> PStatus {
        self.status.lock().unwrap()[p.index()]
    }
    fn current_p(&self) -> ROption<PId> {
        ROption::RSome(PId(0))
    }
    fn arm_poll(&self, p: PId) {
        self.armed.lock().unwrap()[p.index()] = true;
    }
    fn disarm_poll(&self, p: PId) {
        self.armed.lock().unwrap()[p.index()] = false;
    }
    fn try_stop_parked_p(&self, p: PId) -> bool {
        let mut status = self.status.lock().unwrap();
        let parked = status[p.index()] == PStatus::Idle;
        if parked {
            status[p.index()] = PStatus::GcStop;
        }
        parked
    }
    fn release_p(&self, p: PId) {
        let mut status = self.status.lock().unwrap();
        assert_eq!(status[p.index()], PStatus::GcStop, "released {p} unstopped");
        status[p.index()] = PStatus::Idle;
    }
    fn p_thread(&self, _p: PId) -> ROption<OsThread> {
        ROption::RNone
    }
    fn now_nanos(&self) -> u64 {
        0
    }
    fn log(&self, _level: LogLevel, _message: RStr<'_>) {}
    fn at_async_safe_point(&self) -> bool {
        false
    }
    fn oversubscribed(&self) -> bool {
        false
    }
    fn give_way(&self, _p: PId) {}
    fn abi_version(&self) -> AbiVersion {
        ABI_VERSION
    }
    fn trace_signal(&self, _p: PId, _resend: bool) {}
    fn stopped_in_handler(&self, _p: PId, _stopped: bool) -> bool {
        false
    }
}
