//! Who owns a slab, and the one place its encoding in a descriptor's owner
//! word lives.

use crate::cpu::CpuId;

/// The owner of a slab: a CPU slot (through its handle), one shared-path
/// call for a moment, or nobody (abandoned: anyone may adopt it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Cpu(CpuId),
    Shared,
    Abandoned,
}

impl Owner {
    /// The owner word: the CPU + 1, `u32::MAX - 1` for a shared-path call,
    /// `u32::MAX` for nobody. 0 names no owner at all (pages that are not a
    /// slab, and a caller that owns no slab: see [`Owner::token_of`]).
    #[inline(always)]
    pub(crate) const fn token(self) -> u32 {
        match self {
            Owner::Cpu(c) => c.index() as u32 + 1,
            Owner::Shared => u32::MAX - 1,
            Owner::Abandoned => u32::MAX,
        }
    }

    /// The word of an optional owner (`None`: 0, which no slab holds).
    #[inline(always)]
    pub(crate) const fn token_of(owner: Option<Owner>) -> u32 {
        match owner {
            Some(o) => o.token(),
            None => 0,
        }
    }

    /// The owner an owner word names (`None` for 0).
    pub(crate) const fn from_token(t: u32) -> Option<Self> {
        match t {
            0 => None,
            u32::MAX => Some(Owner::Abandoned),
            t if t == u32::MAX - 1 => Some(Owner::Shared),
            t => Some(Owner::Cpu(CpuId::new(t as usize - 1))),
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for o in [
            Owner::Cpu(CpuId::new(0)),
            Owner::Cpu(CpuId::new(63)),
            Owner::Shared,
            Owner::Abandoned,
        ] {
            assert_eq!(Owner::from_token(o.token()), Some(o));
        }
        assert_eq!(Owner::Cpu(CpuId::new(0)).token(), 1);
        assert_eq!(Owner::from_token(0), None);
    }
}
