//! Device counters as the VMM's metrics read them: each device's counter struct (atomic
//! counts its own code bumps) names its fields once, in [`counter_set!`], which gives
//! it [`CounterSet`] and a `name=value ...` [`std::fmt::Display`].

/// A device's counters, readable from any thread while the device runs.
pub trait CounterSet: Send + Sync + std::fmt::Debug {
    /// Each counter's name and current value, in a fixed order.
    fn values(&self) -> Vec<(&'static str, u64)>;
}

/// Implements [`CounterSet`] and `Display` for a struct of `AtomicU64` fields.
#[macro_export]
macro_rules! counter_set {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::counters::CounterSet for $ty {
            fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$((
                    stringify!($field),
                    self.$field.load(std::sync::atomic::Ordering::Relaxed),
                )),+]
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let values = $crate::counters::CounterSet::values(self);
                for (i, (name, value)) in values.iter().enumerate() {
                    write!(f, "{}{name}={value}", if i > 0 { " " } else { "" })?;
                }
                Ok(())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::CounterSet;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Two {
        a: AtomicU64,
        b: AtomicU64,
    }
    crate::counter_set!(Two { a, b });

    #[test]
    fn values_and_text_follow_the_fields() {
        let t = Two::default();
        t.b.fetch_add(3, Ordering::Relaxed);
        assert_eq!(t.values(), vec![("a", 0), ("b", 3)]);
        assert_eq!(t.to_string(), "a=0 b=3");
    }
}
