//! Faults a person or a test injects with `kubectl annotate pod ... sim.dialtone.dev/fault=<kind>`.

// The annotations: `dialtone_api::names::sim::{FAULT, FAULT_APPLIED}`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// One crash: restartCount+1, lastState.terminated reason Error, exit 1, briefly not ready.
    Crash,
    /// One OOM kill: like `Crash` with reason OOMKilled and exit 137.
    Oom,
    /// Crashes again and again with kubelet-like backoff while set (CrashLoopBackOff).
    CrashLoop,
    /// Running but not Ready while set.
    NotReady,
    /// The image can't be pulled while set (ErrImagePull, then ImagePullBackOff).
    ImagePull,
}

impl Fault {
    pub fn parse(value: &str) -> Option<Fault> {
        match value.trim() {
            "crash" => Some(Fault::Crash),
            "oom" => Some(Fault::Oom),
            "crashloop" => Some(Fault::CrashLoop),
            "notready" => Some(Fault::NotReady),
            "imagepull" => Some(Fault::ImagePull),
            _ => None,
        }
    }

    /// One-shot faults act once per setting of the annotation; the others hold while set.
    pub fn is_one_shot(self) -> bool {
        matches!(self, Fault::Crash | Fault::Oom)
    }

    /// The container's last termination for a crash of this kind: (reason, exit code).
    pub fn termination(self) -> (&'static str, i32) {
        match self {
            Fault::Oom => ("OOMKilled", 137),
            _ => ("Error", 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_fault_and_nothing_else() {
        assert_eq!(Fault::parse("crash"), Some(Fault::Crash));
        assert_eq!(Fault::parse("oom"), Some(Fault::Oom));
        assert_eq!(Fault::parse("crashloop"), Some(Fault::CrashLoop));
        assert_eq!(Fault::parse(" notready "), Some(Fault::NotReady));
        assert_eq!(Fault::parse("imagepull"), Some(Fault::ImagePull));
        assert_eq!(Fault::parse("Crash"), None);
        assert_eq!(Fault::parse(""), None);
    }

    #[test]
    fn oom_exits_137() {
        assert_eq!(Fault::Oom.termination(), ("OOMKilled", 137));
        assert_eq!(Fault::Crash.termination(), ("Error", 1));
    }
}
